"""Adaptive and linear quizzes on the demo bank, on SQLite and PostgreSQL.

The psychometric checks are independent of the core: Fisher information and EAP are
recomputed here from the 3PL formulas (Lord 1980, eq. 5-19; Bock & Mislevy 1982) with the
pool file's parameters.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from service.models import OutboxEvent, QuizItem, QuizSession, UserResponse
from service.pools import pool_view

GRID = np.linspace(-6.0, 6.0, 81)


def information_3pl(theta, a, b, c, d):
    """I(theta) = (D a)^2 (Q / P) ((P - c) / (1 - c))^2 for arrays of items."""
    p = c + (1 - c) / (1 + np.exp(-d * a * (theta - b)))
    return (d * a) ** 2 * ((1 - p) / p) * ((p - c) / (1 - c)) ** 2


def eap_by_quadrature(params, responses):
    """EAP and posterior SD on 81 points in [-6, 6] with a N(0, 1) prior (no test pattern here reaches the edge)."""
    log_post = -0.5 * GRID**2
    for (a, b, c, d), u in zip(params, responses):
        p = c + (1 - c) / (1 + np.exp(-d * a * (GRID - b)))
        log_post = log_post + np.log(p if u else 1 - p)
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    mean = float(post @ GRID)
    return mean, float(np.sqrt(post @ (GRID - mean) ** 2))


def start(api, user="alice", **filters):
    body = {"adaptive": filters.pop("adaptive", True), "filters": {"num_questions": 10, **filters}}
    if "blueprint_quota" in filters:
        body["blueprint_quota"] = filters.pop("blueprint_quota")
        body["filters"] = {"num_questions": 10, **filters}
    r = api.post("/v1/quizzes", user=user, json=body)
    assert r.status_code == 201, r.text
    return r.json()


def rows(session_factory, model, quiz_id, order=None):
    with session_factory() as session:
        query = select(model).where(model.quiz_id == quiz_id)
        return session.scalars(query.order_by(order) if order is not None else query).all()


def test_simulated_student_theta_1_5(api, loaded_bank, session_factory, take_quiz):
    """A theta = 1.5 student answering by the 3PL: the stored estimate ends within 0.5 of 1.5
    after 30 items, every item was the most informative one left, every row is complete."""
    rng = np.random.default_rng(20261124)
    quiz = start(api, num_questions=30, mode="exam")
    assert quiz["selector"] == "max_info" and quiz["max_questions"] == 30

    def answer(item):
        qid = item["question_id"]
        correct = rng.random() < loaded_bank.p_correct(qid, 1.5)
        return loaded_bank.key[qid] if correct else loaded_bank.wrong[qid]

    results = take_quiz(api, quiz["quiz_id"], answer)
    assert len(results) == 30 and results[-1]["quiz_finished"]
    with session_factory() as session:
        stored = session.get(QuizSession, quiz["quiz_id"])
    assert (stored.status, stored.finish_reason, stored.n_answered) == ("finished", "length", 30)
    assert abs(stored.theta - 1.5) < 0.5

    responses = rows(session_factory, UserResponse, quiz["quiz_id"], UserResponse.position)
    items = rows(session_factory, QuizItem, quiz["quiz_id"], QuizItem.position)
    assert [r.position for r in responses] == list(range(30))
    theta_before, se_before = eap_by_quadrature([], [])
    served = set()
    all_ids = np.array(sorted(loaded_bank.params))
    all_params = np.array([loaded_bank.params[q] for q in all_ids])
    for k, (response, item) in enumerate(zip(responses, items)):
        # Maximum information at the estimate before the item, among items not yet served.
        info = information_3pl(theta_before, *all_params.T)
        info[np.isin(all_ids, list(served))] = -np.inf
        assert item.question_id == all_ids[np.argmax(info)], f"position {k}"
        served.add(item.question_id)
        assert response.question_version_id == item.question_version_id
        assert response.calibration_id is not None and response.calibration_id == item.calibration_id
        assert response.time_taken_ms == 1200 and response.server_elapsed_ms >= 0
        assert response.theta_before == pytest.approx(theta_before, abs=1e-9)
        assert response.se_before == pytest.approx(se_before, abs=1e-9)
        theta_before, se_before = eap_by_quadrature(
            [loaded_bank.params[r.question_id] for r in responses[: k + 1]],
            [r.is_correct for r in responses[: k + 1]],
        )
        assert response.theta_after == pytest.approx(theta_before, abs=1e-9)
        assert response.se_after == pytest.approx(se_before, abs=1e-9)
        assert response.is_correct == (response.option_label == loaded_bank.key[response.question_id])
    assert stored.theta == pytest.approx(theta_before, abs=1e-9) and stored.se == pytest.approx(
        se_before, abs=1e-9
    )

    with session_factory() as session:
        events = dict(
            session.execute(
                select(OutboxEvent.event_type, func.count())
                .where(OutboxEvent.aggregate_id == quiz["quiz_id"])
                .group_by(OutboxEvent.event_type)
            ).all()
        )
    assert events == {"quiz_started": 1, "question_served": 30, "answer_submitted": 30, "quiz_finished": 1}

    summary = api.get(f"/v1/quizzes/{quiz['quiz_id']}").json()
    assert summary["theta"] == pytest.approx(stored.theta) and summary["se"] == pytest.approx(stored.se)
    assert sum(t["answered"] for t in summary["per_topic"]) == 30
    assert sum(t["correct"] for t in summary["per_topic"]) == sum(r.is_correct for r in responses)
    assert all(i["correct_option"] == loaded_bank.key[i["question_id"]] for i in summary["items"])


def test_key_and_rationale_never_leave_before_the_answer(api, loaded_bank):
    for mode in ("exam", "tutor"):
        created = api.client.post(
            "/v1/quizzes", headers=api.headers(), json={"filters": {"num_questions": 3, "mode": mode}}
        )
        quiz_id = created.json()["quiz_id"]
        for position in range(3):
            r = api.get(f"/v1/quizzes/{quiz_id}/next")
            body = r.json()
            qid = body["question_id"]
            assert set(body) == {"quiz_id", "position", "question_id", "version", "payload", "max_questions"}
            assert all(set(o) == {"label", "text"} for o in body["payload"]["options"])
            for secret in ("is_correct", "correct", "rationale", loaded_bank.rationale[qid]):
                assert secret not in r.text and secret not in created.text
            pending = api.get(f"/v1/quizzes/{quiz_id}").json()["items"][-1]
            assert pending["selected"] is None
            assert (pending["correct"], pending["correct_option"], pending["rationale_md"]) == (
                None,
                None,
                None,
            )
            result = api.post(
                f"/v1/quizzes/{quiz_id}/answers",
                json={"question_id": qid, "selected": loaded_bank.wrong[qid]},
            ).json()
            if mode == "tutor":
                assert result["revealed"] and result["correct"] is False
                assert result["correct_option"] == loaded_bank.key[qid]
                assert result["explanation"] == {"rationale_md": loaded_bank.rationale[qid]}
            else:
                assert not result["revealed"]
                assert (result["correct"], result["correct_option"], result["explanation"]) == (
                    None,
                    None,
                    None,
                )
                if position < 2:
                    summary = api.get(f"/v1/quizzes/{quiz_id}").json()
                    assert loaded_bank.rationale[qid] not in json.dumps(summary)
                    assert summary["theta"] is None and summary["correct"] is None
        summary = api.get(f"/v1/quizzes/{quiz_id}").json()
        assert summary["status"] == "finished"
        assert [i["correct_option"] for i in summary["items"]] == [
            loaded_bank.key[i["question_id"]] for i in summary["items"]
        ]


def test_pending_item_idempotent_answers_and_conflicts(api, loaded_bank, session_factory):
    quiz_id = start(api, num_questions=5)["quiz_id"]
    r = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": 1, "selected": "A"})
    assert r.status_code == 409 and "no item is pending" in r.json()["detail"]
    first = api.get(f"/v1/quizzes/{quiz_id}/next")
    assert api.get(f"/v1/quizzes/{quiz_id}/next").json() == first.json()
    qid = first.json()["question_id"]
    other = next(q for q in loaded_bank.key if q != qid)
    r = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": other, "selected": "A"})
    assert r.status_code == 409 and "pending item is position 0" in r.json()["detail"]
    r = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": "Z"})
    assert r.status_code == 422 and "'Z' is not an option" in r.json()["detail"]
    r = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": "A", "position": 3})
    assert r.status_code == 409
    key, wrong = loaded_bank.key[qid], loaded_bank.wrong[qid]
    answered = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": key.lower()})
    assert answered.status_code == 200 and answered.json()["correct"] is True
    replay = api.post(
        f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": key, "position": 0}
    )
    assert replay.status_code == 200 and replay.json() == answered.json()
    changed = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": wrong})
    assert changed.status_code == 409 and "already answered" in changed.json()["detail"]
    assert len(rows(session_factory, UserResponse, quiz_id)) == 1
    second = api.get(f"/v1/quizzes/{quiz_id}/next").json()
    assert second["position"] == 1 and second["question_id"] != qid


def test_quiz_resumes_after_restart(api, loaded_bank, session_factory, restart_app):
    quiz_id = start(api, num_questions=10)["quiz_id"]
    for _ in range(5):
        item = api.get(f"/v1/quizzes/{quiz_id}/next").json()
        api.post(
            f"/v1/quizzes/{quiz_id}/answers",
            json={"question_id": item["question_id"], "selected": loaded_bank.key[item["question_id"]]},
        )
    pending = api.get(f"/v1/quizzes/{quiz_id}/next").json()
    assert pending["position"] == 5
    token = api.token()
    api.client.app.state.engine.dispose()  # the old process is gone

    restarted = restart_app()
    with TestClient(restarted) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/v1/quizzes/{quiz_id}/next", headers=headers).json() == pending
        item = pending
        for position in range(5, 10):
            assert item["position"] == position
            r = client.post(
                f"/v1/quizzes/{quiz_id}/answers",
                headers=headers,
                json={"question_id": item["question_id"], "selected": "A"},
            )
            assert r.status_code == 200
            if position < 9:
                item = client.get(f"/v1/quizzes/{quiz_id}/next", headers=headers).json()
        assert r.json()["quiz_finished"]
        summary = client.get(f"/v1/quizzes/{quiz_id}", headers=headers).json()
    assert summary["status"] == "finished" and summary["answered"] == 10
    assert [r.position for r in rows(session_factory, UserResponse, quiz_id, UserResponse.position)] == list(
        range(10)
    )


def test_finished_and_expired_quizzes_refuse_answers(api, loaded_bank, session_factory, take_quiz):
    quiz_id = start(api, num_questions=2)["quiz_id"]
    take_quiz(api, quiz_id, lambda item: "A")
    r = api.get(f"/v1/quizzes/{quiz_id}/next")
    assert r.status_code == 409 and "is finished (length)" in r.json()["detail"]

    quiz_id = start(api, num_questions=5)["quiz_id"]
    item = api.get(f"/v1/quizzes/{quiz_id}/next").json()
    with session_factory() as session:
        session.execute(
            update(QuizSession).where(QuizSession.id == quiz_id).values(expires_at=QuizSession.created_at)
        )
        session.commit()
    r = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": item["question_id"], "selected": "A"})
    assert r.status_code == 410 and "expired" in r.json()["detail"]
    assert api.get(f"/v1/quizzes/{quiz_id}/next").status_code == 410
    assert api.get(f"/v1/quizzes/{quiz_id}").json()["status"] == "expired"
    assert rows(session_factory, UserResponse, quiz_id) == []


def test_unknown_ids_malformed_bodies_and_tenants(api, loaded_bank, other_tenant):
    for path in ("/v1/quizzes/no-such-quiz", "/v1/quizzes/no-such-quiz/next"):
        r = api.get(path)
        assert r.status_code == 404 and "no-such-quiz" in r.json()["detail"]
    r = api.post("/v1/quizzes/no-such-quiz/answers", json={"question_id": 1, "selected": "A"})
    assert r.status_code == 404
    quiz_id = start(api, num_questions=3)["quiz_id"]
    assert api.get(f"/v1/quizzes/{quiz_id}/next", user="mallory").status_code == 404
    assert api.get(f"/v1/quizzes/{quiz_id}", user="alice", tenant=other_tenant).status_code == 404
    assert api.get(f"/v1/quizzes/{quiz_id}", user="root", roles=["admin"]).status_code == 200

    def field_of(r):
        assert r.status_code == 422, r.text
        return [e["loc"][-1] for e in r.json()["detail"]]

    assert field_of(api.post("/v1/quizzes", json={"filters": {"num_questions": 0}})) == ["num_questions"]
    assert field_of(api.post("/v1/quizzes", json={"filters": {"mode": "practice"}})) == ["mode"]
    assert field_of(api.post("/v1/quizzes", json={"filters": {"difficulty": ["trivial"]}})) == [0]
    assert "b_min" in api.post("/v1/quizzes", json={"filters": {"b_min": 1, "b_max": 0}}).text
    assert field_of(api.post(f"/v1/quizzes/{quiz_id}/answers", json={"selected": "A"})) == ["question_id"]
    assert field_of(
        api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": 1, "selected": "AB"})
    ) == ["selected"]
    assert field_of(
        api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": "x", "selected": "A"})
    ) == ["question_id"]
    r = api.post(
        f"/v1/quizzes/{quiz_id}/answers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    r = api.post("/v1/quizzes", json={"filters": {"topics": ["astrology"]}})
    assert r.status_code == 422 and "astrology" in r.json()["detail"]
    r = api.post("/v1/quizzes", json={"filters": {"num_questions": 5}, "blueprint_quota": {"fractions": 6}})
    assert r.status_code == 422 and "add up to 6" in r.json()["detail"]
    r = api.post(
        "/v1/quizzes",
        json={
            "filters": {"topics": ["fractions"], "difficulty": ["easy"]},
            "blueprint_quota": {"fractions": 40},
        },
    )
    assert r.status_code == 422 and "not enough eligible items" in r.json()["detail"]
    r = api.post("/v1/quizzes", json={"filters": {"exam_code": "NO-EXAM"}})
    assert r.status_code == 404 and "NO-EXAM" in r.json()["detail"]
    r = api.post("/v1/quizzes", json={"tenant_id": other_tenant, "filters": {}})
    assert r.status_code == 403
    r = api.post("/v1/quizzes", tenant=other_tenant, json={"filters": {}})
    assert r.status_code == 404 and "no published items" in r.json()["detail"]
    assert api.get("/v1/admin/exposure/items", user="root", roles=["admin"], tenant=other_tenant).json() == []


def test_topic_difficulty_filters_and_blueprint_quotas(api, loaded_bank, session_factory, take_quiz):
    quiz_id = start(api, num_questions=8, topics=["fractions", "percentages"], difficulty=["hard"])["quiz_id"]
    take_quiz(api, quiz_id, lambda item: loaded_bank.key[item["question_id"]])
    served = [i.question_id for i in rows(session_factory, QuizItem, quiz_id)]
    assert len(served) == 8
    assert {loaded_bank.topic[q] for q in served} <= {"fractions", "percentages"}
    assert all(loaded_bank.params[q][1] > 0.5 for q in served)  # "hard" is b > 0.5 in the demo bank

    quiz_id = start(api, num_questions=10, blueprint_quota={"fractions": 3, "length-units": 2})["quiz_id"]
    take_quiz(api, quiz_id, lambda item: "B")
    topics = [loaded_bank.topic[i.question_id] for i in rows(session_factory, QuizItem, quiz_id)]
    assert len(topics) == 10 and topics.count("fractions") == 3 and topics.count("length-units") == 2


def test_standard_error_stop_and_linear_quiz(api, loaded_bank, session_factory, take_quiz):
    quiz_id = start(api, num_questions=40, se_target=0.5, min_questions=4)["quiz_id"]
    results = take_quiz(api, quiz_id, lambda item: loaded_bank.key[item["question_id"]])
    with session_factory() as session:
        quiz = session.get(QuizSession, quiz_id)
    assert quiz.finish_reason == "se_target" and 4 <= quiz.n_answered < 40 and quiz.se <= 0.5
    assert len(results) == quiz.n_answered

    created = start(api, num_questions=6, adaptive=False)
    assert created["selector"] == "linear" and len(created["question_ids"]) == 6
    take_quiz(api, created["quiz_id"], lambda item: "C")
    served = [i.question_id for i in rows(session_factory, QuizItem, created["quiz_id"], QuizItem.position)]
    assert served == created["question_ids"]


def test_sympson_hetter_cohort_withdraws_and_replays(api, loaded_bank, session_factory, take_quiz):
    admin = dict(user="root", roles=["admin"])
    assert (
        api.put(
            "/v1/admin/cohorts",
            json={"user_id": "alice", "cohort_key": "selector_strategy", "cohort_value": "sympson_hetter"},
            **admin,
        ).status_code
        == 200
    )
    ids = np.array(sorted(loaded_bank.params))
    info = information_3pl(0.0, *np.array([loaded_bank.params[q] for q in ids]).T)
    top = ids[np.argsort(-info)[:25]]
    assert (
        api.post(
            "/v1/admin/exposure/set", json={"question_id": int(top[0]), "version": 1, "sh_p": 0.0}, **admin
        ).status_code
        == 200
    )
    for qid in top[1:]:
        api.post("/v1/admin/exposure/set", json={"question_id": int(qid), "version": 1, "sh_p": 0.3}, **admin)
    # The manual changes accumulate in one chain of unvalidated revisions; the newest holds them all.
    newest = api.get("/v1/admin/exposure/bundles?status=unvalidated", **admin).json()[0]
    assert len(newest["revision"]["changes"]) == 1 and newest["parent_id"]
    k = {
        item["item_id"]: item["sh_p"]
        for item in api.get(f"/v1/admin/exposure/bundles/{newest['id']}", **admin).json()["document"]["items"]
    }
    assert [k[loaded_bank.ref[int(q)]] for q in top] == [0.0] + [0.3] * 24
    r = api.post(f"/v1/admin/exposure/bundles/{newest['id']}/promote?force=true", **admin)
    assert r.status_code == 200, r.text
    quiz = start(api, num_questions=12)
    assert quiz["selector"] == "sympson_hetter"
    take_quiz(api, quiz["quiz_id"], lambda item: loaded_bank.key[item["question_id"]])
    with session_factory() as session:
        stored = session.get(QuizSession, quiz["quiz_id"])
        view = pool_view(session, stored.pool_snapshot_id)
    items = rows(session_factory, QuizItem, quiz["quiz_id"], QuizItem.position)
    served = [i.question_id for i in items]
    withdrawn = {int(view.question_id[i]) for i in stored.withdrawn}
    assert int(top[0]) in withdrawn and int(top[0]) not in served
    assert not withdrawn & set(served)

    # An audit replays the served sequence in the core from the pinned revision alone (docs/architecture.md).
    audit = api.get(f"/v1/admin/quizzes/{quiz['quiz_id']}/audit", **admin).json()
    assert (
        audit["identical"] is True and audit["bundle_id"] == newest["id"] and audit["positions"] == len(items)
    )


def test_selector_flag_applies_to_new_quizzes(api, loaded_bank, take_quiz):
    admin = dict(user="root", roles=["admin"])
    r = api.put("/v1/admin/flags/selector_strategy", json={"value_json": {"value": "a_stratified"}}, **admin)
    assert r.status_code == 200
    quiz = start(api, num_questions=4)
    assert quiz["selector"] == "a_stratified"
    assert len(take_quiz(api, quiz["quiz_id"], lambda item: "A")) == 4
    r = api.put("/v1/admin/flags/selector_strategy", json={"value_json": {"value": "best_guess"}}, **admin)
    assert r.status_code == 422 and "best_guess" in r.json()["detail"]


def test_concurrent_requests_serve_one_item_and_record_one_answer(api, loaded_bank, session_factory):
    """Eight simultaneous `next` calls get the same item; eight simultaneous answers (half of them
    different) record one response: replays of the winner get its result, the others a 409."""
    from concurrent.futures import ThreadPoolExecutor

    from service import quizzes
    from service.core.security import TokenUser
    from service.errors import Conflict
    from service.schemas import AnswerSubmit

    quiz_id = start(api, num_questions=5)["quiz_id"]
    user = TokenUser(sub="alice", roles=["student"], tenant=api.default_tenant)

    def serve(_):
        with session_factory() as session:
            return quizzes.next_item(session, user, quiz_id)

    with ThreadPoolExecutor(8) as pool:
        served = list(pool.map(serve, range(8)))
    assert all(s == served[0] for s in served)
    qid = served[0]["question_id"]
    labels = [loaded_bank.key[qid], loaded_bank.wrong[qid]] * 4

    def answer(label):
        with session_factory() as session:
            try:
                return quizzes.submit_answer(
                    session, user, quiz_id, AnswerSubmit(question_id=qid, selected=label)
                )
            except Conflict as exc:
                return exc

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(answer, labels))
    recorded = rows(session_factory, UserResponse, quiz_id)
    assert len(recorded) == 1 and len(rows(session_factory, QuizItem, quiz_id)) == 1
    winner = recorded[0].option_label
    for label, outcome in zip(labels, outcomes):
        if label == winner:
            assert outcome["selected"] == winner and outcome["position"] == 0
        else:
            assert isinstance(outcome, Conflict) and "already answered" in outcome.detail
    with session_factory() as session:
        served_events = session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.aggregate_id == quiz_id, OutboxEvent.event_type == "question_served")
        )
    assert served_events == 1


def test_an_answer_can_bring_the_next_item_in_the_same_response(api, loaded_bank, session_factory):
    """``?next=true``: the response carries the item GET .../next would serve (the same one, which
    GET still serves until it is answered); a replay returns the same; the last answer carries
    none; and a quiz taken this way serves and estimates exactly as one taken with two calls."""

    def answer(qid: int) -> str:  # deterministic, so two quizzes can be compared
        return loaded_bank.key[qid] if qid % 3 else loaded_bank.wrong[qid]

    two_calls = start(api, num_questions=8, mode="exam")["quiz_id"]
    served_two_calls = []
    for _ in range(8):
        qid = api.get(f"/v1/quizzes/{two_calls}/next").json()["question_id"]
        served_two_calls.append(qid)
        api.post(f"/v1/quizzes/{two_calls}/answers", json={"question_id": qid, "selected": answer(qid)})

    one_call = start(api, num_questions=8, mode="exam")["quiz_id"]
    item = api.get(f"/v1/quizzes/{one_call}/next").json()
    served_one_call = []
    for position in range(8):
        qid = item["question_id"]
        served_one_call.append(qid)
        body = {"question_id": qid, "selected": answer(qid)}
        r = api.post(f"/v1/quizzes/{one_call}/answers?next=true", json=body)
        assert r.status_code == 200, r.text
        result = r.json()
        assert api.post(f"/v1/quizzes/{one_call}/answers?next=true", json=body).json() == result
        assert not result["revealed"] and result["correct_option"] is None
        if position == 7:
            assert result["quiz_finished"] and result["next_item"] is None
            break
        item = result["next_item"]
        assert item["position"] == position + 1
        assert item == api.get(f"/v1/quizzes/{one_call}/next").json()
        assert all(set(o) == {"label", "text"} for o in item["payload"]["options"])
        assert loaded_bank.rationale[item["question_id"]] not in r.text

    assert served_one_call == served_two_calls
    audit = api.get(f"/v1/admin/quizzes/{one_call}/audit", user="root", roles=["admin"]).json()
    assert audit["identical"] is True  # the core replays it to the same items and estimates
    with session_factory() as session:
        first, second = session.get(QuizSession, two_calls), session.get(QuizSession, one_call)
        assert (second.status, second.n_answered) == ("finished", 8)
        assert (second.theta, second.se) == (first.theta, first.se)
    assert len(rows(session_factory, UserResponse, one_call)) == 8
    plain = api.post(f"/v1/quizzes/{one_call}/answers", json=body).json()  # no ?next: as before
    assert plain["next_item"] is None
