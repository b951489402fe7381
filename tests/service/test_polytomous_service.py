"""Polytomous items in the delivery service (issue 18), on SQLite and PostgreSQL.

Authors write items with scored options (0 .. m-1); a GRM/GPCM calibration imports only onto an
item with as many score categories; a quiz on a mixed pool (dichotomous, GRM and GPCM items)
passes the chosen option's score to the estimator as the category response, and the same
student replayed in the core (:func:`qbank.rules.run_test`) gives identical items, theta and SE
(``==``); the admin audit replays it as identical. Scores and keys stay on the server until
the answer.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from qbank.pool import ItemPool
from qbank.rules import rules_from_settings, run_test
from service.models import ItemCalibration, QuestionOption, UserResponse

AUTHOR = {"user": "ann", "roles": ["author", "publisher"]}
ADMIN = {"user": "root", "roles": ["admin"]}
LABELS = "ABCDEFGH"


def scored(ref: str, scores, topic: str = "algebra", **changes) -> dict:
    """A question whose option ``LABELS[k]`` earns ``scores[k]``."""
    body = {
        "external_ref": ref,
        "topic_name": topic,
        "stem_md": f"Solve {ref} and show the steps.",
        "lead_in": "Pick the best worked answer",
        "rationale_md": f"The full solution of {ref}.",
        "difficulty_label": "medium",
        "options": [
            {"label": LABELS[k], "text_md": f"answer {LABELS[k]} of {ref}", "score": s}
            for k, s in enumerate(scores)
        ],
    }
    body.update(changes)
    return body


def dichotomous(ref: str, topic: str = "algebra") -> dict:
    return {
        "external_ref": ref,
        "topic_name": topic,
        "stem_md": f"What is {ref}?",
        "rationale_md": f"{ref} explained.",
        "options": [
            {"label": "A", "text_md": "right", "is_correct": True},
            {"label": "B", "text_md": "wrong", "is_correct": False},
            {"label": "C", "text_md": "also wrong", "is_correct": False},
        ],
    }


def create(api, body, publish: bool = True) -> int:
    r = api.post("/v1/author/questions", json=body, **AUTHOR)
    assert r.status_code == 200, r.text
    qid = r.json()["question_id"]
    if publish:
        assert api.post(f"/v1/author/publish/{qid}", **AUTHOR).status_code == 200
    return qid


def upload(api, frame: pd.DataFrame, name: str = "poly.csv"):
    content = frame.to_csv(index=False).encode()
    return api.post("/v1/admin/calibrations", files={"file": (name, content, "text/csv")}, **ADMIN)


# ---------------------------------------------------------------------------- authoring
def opts(*scores, **extra):
    return [{"label": LABELS[k], "text_md": f"o{k}", "score": s, **extra} for k, s in enumerate(scores)]


@pytest.mark.parametrize(
    "options, loc, message",
    [
        (opts(0, -1, 2), ["body", "options", 1, "score"], "greater than or equal to 0"),
        (opts(0, 2, 3), ["body", "options"], "score: the scores must be 0, 1, .., m-1 with every category"),
        (opts(1, 2, 3), ["body", "options"], "missing [0]"),
        (opts(0, 0), ["body", "options"], "score: an item needs at least 2 score categories"),
        (opts(0, 1, 2, 2), ["body", "options"], "score: exactly one option must have the top score 2"),
        (
            [*opts(0, 1), {"label": "C", "text_md": "x", "is_correct": False}],
            ["body", "options"],
            "score: once one option has a score every option needs one; missing for ['C']",
        ),
        (
            [
                {"label": "A", "text_md": "x", "score": 2, "is_correct": False},
                {"label": "B", "text_md": "y", "score": 1},
                {"label": "C", "text_md": "z", "score": 0},
            ],
            ["body", "options"],
            "is_correct: must be true for the option with the top score only",
        ),
        (
            [{"label": "A", "text_md": "x", "is_correct": True}, {"label": "B", "text_md": "y"}],
            ["body", "options"],
            "every option needs is_correct (or every option a score); missing for ['B']",
        ),
    ],
)
def test_scored_options_are_validated(api, options, loc, message):
    r = api.post("/v1/author/questions", json=scored("V-1", [0, 1], options=options), **AUTHOR)
    assert r.status_code == 422, r.text
    issue = r.json()["detail"][0]
    assert issue["loc"] == loc and message in issue["msg"], issue


def test_scored_options_are_stored_with_full_credit_as_the_key(api):
    qid = create(api, scored("S-1", [1, 2, 0]), publish=False)
    options = api.get(f"/v1/author/questions/{qid}", **AUTHOR).json()["versions"][0]["options"]
    assert [(o["label"], o["score"], o["is_correct"]) for o in options] == [
        ("A", 1, False),
        ("B", 2, True),
        ("C", 0, False),
    ]
    # A dichotomous item keeps its API: is_correct only, the score follows (1 / 0).
    qid = create(api, dichotomous("D-1"), publish=False)
    options = api.get(f"/v1/author/questions/{qid}", **AUTHOR).json()["versions"][0]["options"]
    assert [(o["score"], o["is_correct"]) for o in options] == [(1, True), (0, False), (0, False)]


# ---------------------------------------------------------------------------- calibration
def test_calibration_categories_must_match_the_option_scores(api, session_factory):
    create(api, scored("G-3", [0, 1, 2]))
    create(api, scored("P-4", [3, 0, 2, 1]))
    create(api, dichotomous("D-2"))
    good = pd.DataFrame(
        {
            "item_id": ["G-3", "P-4", "D-2"],
            "a": [1.3, 0.9, 1.1],
            "b": [0.0, 0.0, -0.4],
            "c": [0.0, 0.0, 0.2],
            "model": ["GRM", "GPCM", "3PL"],
            "b1": [-0.8, -1.0, np.nan],
            "b2": [0.6, 0.7, np.nan],
            "b3": [np.nan, 0.1, np.nan],
        }
    )
    wrong = good.assign(b3=[1.5, 0.1, np.nan])  # G-3 now has 4 categories, its options 3 scores
    r = upload(api, wrong, "wrong.csv")
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "wrong.csv: the number of score categories (model, b1, b2, ...) must equal the number of "
        "distinct option scores of the question; bad items: ['G-3 (4 in the calibration, 3 option scores)']"
    )
    dichotomous_on_scored = good.assign(model=["3PL", "GPCM", "3PL"], b1=[np.nan, -1.0, np.nan])
    dichotomous_on_scored["b2"] = [np.nan, 0.7, np.nan]
    r = upload(api, dichotomous_on_scored, "d.csv")
    assert r.status_code == 422 and "['G-3 (2 in the calibration, 3 option scores)']" in r.json()["detail"]
    with session_factory() as session:
        assert session.scalars(select(ItemCalibration)).all() == []  # nothing imported

    r = upload(api, good)
    assert r.status_code == 200 and (r.json()["imported"], r.json()["model"]) == (3, "mixed"), r.text
    with session_factory() as session:
        rows = {c.model: c for c in session.scalars(select(ItemCalibration))}
    assert set(rows) == {"GRM", "GPCM", "3PL"}
    assert (rows["GRM"].thresholds, rows["GRM"].b, rows["GRM"].c) == ([-0.8, 0.6], np.mean([-0.8, 0.6]), 0.0)
    assert rows["GPCM"].thresholds == [-1.0, 0.7, 0.1] and rows["3PL"].thresholds is None
    r = api.get(f"/v1/author/questions/{rows['GRM'].question_id}", **AUTHOR).json()
    assert r["versions"][0]["calibration"]["thresholds"] == [-0.8, 0.6]


# ---------------------------------------------------------------------------- delivery
def mixed_bank(api) -> tuple[dict, pd.DataFrame]:
    """Six GRM (3 categories), three GPCM (4) and nine dichotomous items, published and
    calibrated; returns {question id: option scores by label} and the calibration frame (in
    question id order, the pool order of the service)."""
    rng = np.random.default_rng(18)
    rows, scores = [], {}
    for k in range(18):
        ref = f"M-{k:02d}"
        if k % 3 == 0 or k == 4:
            m = 4 if k in (0, 9, 4) else 3
            model = "GPCM" if m == 4 else "GRM"
            option_scores = rng.permutation(m).tolist()
            qid = create(api, scored(ref, option_scores, topic="t1" if k % 2 else "t2"))
            steps = np.sort(rng.normal(0.0, 1.0, m - 1))
            rows.append(
                {"item_id": ref, "a": 1.0 + 0.1 * k, "b": 0.0, "c": 0.0, "model": model}
                | {f"b{j + 1}": float(t) for j, t in enumerate(steps)}
            )
            scores[qid] = dict(zip(LABELS, option_scores))
        else:
            qid = create(api, dichotomous(ref, topic="t1" if k % 2 else "t2"))
            rows.append(
                {"item_id": ref, "a": 0.8 + 0.05 * k, "b": float(rng.normal()), "c": 0.15, "model": "3PL"}
            )
            scores[qid] = {"A": 1, "B": 0, "C": 0}
    frame = pd.DataFrame(rows)
    r = upload(api, frame)
    assert r.status_code == 200 and r.json()["model"] == "mixed", r.text
    return scores, frame


def test_mixed_pool_quiz_replays_identically_in_the_core(api, session_factory, database_url):
    scores, frame = mixed_bank(api)
    qids = sorted(scores)
    pool = ItemPool.from_frame(frame)  # created in question id order: the service's pool order
    assert pool.is_polytomous and list(pool.n_categories[:1]) == [4]

    def choice(position: int, qid: int) -> str:
        """Partial credit on every other polytomous item: the option worth ``position % m``."""
        table = scores[qid]
        want = position % len(set(table.values()))
        return next(label for label, s in table.items() if s == want)

    quiz = api.post("/v1/quizzes", json={"filters": {"num_questions": 10, "mode": "tutor"}})
    assert quiz.status_code == 201, quiz.text
    quiz_id = quiz.json()["quiz_id"]
    earned = []
    for position in range(10):
        item = api.get(f"/v1/quizzes/{quiz_id}/next")
        assert item.status_code == 200, item.text
        qid = item.json()["question_id"]
        label = choice(position, qid)
        result = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": label})
        assert result.status_code == 200, result.text
        body = result.json()
        top = max(scores[qid].values())
        assert (body["score"], body["max_score"], body["correct"]) == (
            scores[qid][label],
            top,
            scores[qid][label] == top,
        )
        earned.append(scores[qid][label])
    summary = api.get(f"/v1/quizzes/{quiz_id}").json()
    assert summary["status"] == "finished"
    assert [row["score"] for row in summary["items"]] == earned

    with session_factory() as session:
        stored = session.execute(
            select(
                UserResponse.question_id, UserResponse.score, UserResponse.theta_after, UserResponse.se_after
            )
            .where(UserResponse.quiz_id == quiz_id)
            .order_by(UserResponse.position)
        ).all()
    assert [r.score for r in stored] == earned
    assert any(0 < r.score < max(scores[r.question_id].values()) for r in stored)  # partial credit

    # The same student in the core: the quiz's rules on the same pool, answering the same options.
    rules = summary["rules"]
    core = rules_from_settings(
        rules["selector"]["rule"],
        estimator=rules["estimator"],
        stopping=rules["stopping"],
        first_item=rules["first_item"],
    )
    record = run_test(core, pool, quiz_id, lambda position, i: scores[qids[i]][choice(position, qids[i])])
    assert [qids[i] for i in record.items] == [r.question_id for r in stored]
    assert list(zip(record.theta_after, record.se_after)) == [(r.theta_after, r.se_after) for r in stored]
    # theta and SE are the estimator's with the category responses
    answered = np.array(record.items, dtype=np.intp)
    assert core.estimate(pool, answered, [float(s) for s in earned]) == (stored[-1][2], stored[-1][3])

    audit = api.get(f"/v1/admin/quizzes/{quiz_id}/audit", **ADMIN)
    assert audit.status_code == 200 and audit.json()["identical"] is True, audit.text
    from click.testing import CliRunner

    from qbank.cli.main import cli

    result = CliRunner().invoke(cli, ["audit-quiz", quiz_id, "--database-url", database_url])
    assert result.exit_code == 0 and "identical (10 position(s)" in result.output, result.output
    # The nightly job's responses are the scores too (a calibration of them needs GRM/GPCM).
    from service.exposure.reestimate import recent_responses

    with session_factory() as session:
        recent = recent_responses(session, api.default_tenant, "DEMO-EXAM", days=1)
    assert sorted(recent["response"].tolist()) == sorted(earned)


def test_scores_and_key_stay_on_the_server_before_the_answer(api, session_factory):
    scores, _ = mixed_bank(api)
    quiz_id = api.post("/v1/quizzes", json={"filters": {"num_questions": 3, "mode": "exam"}}).json()[
        "quiz_id"
    ]
    for _ in range(3):
        item = api.get(f"/v1/quizzes/{quiz_id}/next")
        payload = item.json()
        assert set(payload) == {"quiz_id", "position", "question_id", "version", "payload", "max_questions"}
        assert [set(o) for o in payload["payload"]["options"]] == [{"label", "text"}] * len(
            payload["payload"]["options"]
        )
        assert "score" not in item.text and "correct" not in item.text and "full solution" not in item.text
        summary = api.get(f"/v1/quizzes/{quiz_id}")
        assert "score" not in {k for row in summary.json()["items"] for k, v in row.items() if v is not None}
        qid = payload["question_id"]
        label = min(scores[qid], key=scores[qid].get)  # no credit
        result = api.post(f"/v1/quizzes/{quiz_id}/answers", json={"question_id": qid, "selected": label})
        body = result.json()
        if not body["quiz_finished"]:  # exam mode: nothing revealed until the end
            assert (body["score"], body["max_score"], body["correct"], body["correct_option"]) == (None,) * 4
    finished = api.get(f"/v1/quizzes/{quiz_id}").json()
    assert finished["status"] == "finished"
    assert [(row["score"], row["max_score"]) for row in finished["items"]] == [
        (0, max(scores[row["question_id"]].values())) for row in finished["items"]
    ]


def test_migrated_scores_follow_is_correct(session_factory):
    """Rows written without a score (the scaffold's writers) get 1 when correct, else 0."""
    with session_factory() as session:
        from service.models import Question, QuestionVersion

        question = Question(tenant_id="t", external_ref=None, created_by="x", is_deleted=False)
        session.add(question)
        session.flush()
        version = QuestionVersion(
            question_id=question.id,
            version=1,
            state="draft",
            stem_md="s",
            lead_in="",
            rationale_md="r",
            created_by="x",
        )
        session.add(version)
        session.flush()
        session.add_all(
            QuestionOption(
                question_version_id=version.id, option_label=k, option_text_md=k, is_correct=k == "B"
            )
            for k in "AB"
        )
        session.commit()
        assert session.execute(select(QuestionOption.option_label, QuestionOption.score)).all() == [
            ("A", 0),
            ("B", 1),
        ]


def test_qbank_calibrate_grm_output_imports_with_its_report(api, session_factory, database_url, tmp_path):
    """`qbank calibrate --model GRM` on responses scored 0/1/2 (mixed with 0/1 items) writes a
    pool and report that the upload (with the report) and `qbank import-calibration` take; a
    report whose thresholds differ is refused."""
    from click.testing import CliRunner

    from qbank.cli.main import cli
    from qbank.polytomous import category_probabilities

    true = ItemPool.from_frame(
        pd.DataFrame(
            {
                "item_id": [f"C-{k}" for k in range(6)],
                "a": [1.2, 0.9, 1.5, 1.0, 1.3, 0.8],
                "b": [0.0, 0.0, 0.0, -0.5, 0.3, 0.8],
                "c": [0.0] * 6,
                "model": ["GRM", "GRM", "GRM", "", "", ""],
                "b1": [-1.0, -0.5, -1.2] + [np.nan] * 3,
                "b2": [0.5, 1.0, 0.3] + [np.nan] * 3,
            }
        )
    )
    rng = np.random.default_rng(1969)
    theta = rng.normal(size=1000)
    p = category_probabilities(
        theta[:, None], true.a, true.b, true.c, true.D, true.model_codes, true.threshold_table
    )
    x = (rng.random((theta.size, true.n_items))[..., None] > np.cumsum(p, axis=-1)).sum(-1)
    responses = pd.DataFrame(
        {
            "person_id": np.repeat(np.arange(theta.size), true.n_items),
            "item_id": np.tile(true.item_id, theta.size),
            "response": x.ravel(),
        }
    )
    responses.to_csv(tmp_path / "responses.csv", index=False)
    out = tmp_path / "grm.csv"
    args = ["calibrate", "--responses", str(tmp_path / "responses.csv"), "--model", "GRM"]
    result = CliRunner().invoke(cli, [*args, "--dichotomous-model", "2PL", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for k in range(6):
        create(api, scored(f"C-{k}", [1, 2, 0]) if k < 3 else dichotomous(f"C-{k}"))

    report = (tmp_path / "grm.report.json").read_bytes()
    document = json.loads(report)
    document["items"][0]["b2"] += 0.25
    tampered = json.dumps(document).encode()
    files = {
        "file": ("grm.csv", out.read_bytes(), "text/csv"),
        "report": ("r.json", tampered, "application/json"),
    }
    r = api.post("/v1/admin/calibrations", files=files, **ADMIN)
    assert (
        r.status_code == 422 and "r.json has other parameters than grm.csv for 1 item(s): ['C-0']" in r.text
    )

    files["report"] = ("grm.report.json", report, "application/json")
    r = api.post("/v1/admin/calibrations", files=files, **ADMIN)
    assert r.status_code == 200 and (r.json()["imported"], r.json()["model"]) == (6, "mixed"), r.text
    fitted = ItemPool.from_frame(pd.read_csv(out, dtype={"item_id": str}))
    with session_factory() as session:
        rows = session.execute(
            select(ItemCalibration.model, ItemCalibration.thresholds, ItemCalibration.n_respondents)
            .where(ItemCalibration.is_current)
            .order_by(ItemCalibration.question_id)
        ).all()
    assert [r.model for r in rows] == ["GRM"] * 3 + ["2PL"] * 3
    assert [r.thresholds for r in rows[:3]] == [fitted.thresholds[k].tolist() for k in range(3)]
    assert {r.n_respondents for r in rows} == {1000}

    # The command line takes the same files (report beside the pool) into the same tables.
    result = CliRunner().invoke(
        cli, ["import-calibration", str(out), "--database-url", database_url, "--tenant", api.default_tenant]
    )
    assert result.exit_code == 0, result.output
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ItemCalibration)) == 12


def test_uncalibrated_scored_item_is_a_provisional_partial_credit_item(api, session_factory):
    """Before any calibration a 3-category item is served as a partial credit item (GPCM, a = 1,
    steps b - 1 and b + 1 around its label's provisional b) and takes partial credit."""
    from service.models import QuizSession
    from service.pools import pool_view

    qid = create(api, scored("U-1", [2, 0, 1], difficulty_label="hard"))
    create(api, dichotomous("U-2"))
    quiz_id = api.post("/v1/quizzes", json={"filters": {"num_questions": 2}}).json()["quiz_id"]
    with session_factory() as session:
        view = pool_view(session, session.get(QuizSession, quiz_id).pool_snapshot_id)
        i = int(np.flatnonzero(view.question_id == qid)[0])
        assert (view.pool.model_codes[i], view.pool.a[i], view.pool.b[i]) == (2, 1.0, 1.0)  # GPCM
        assert view.pool.thresholds[i].tolist() == [0.0, 2.0]
        assert view.pool.model_codes[1 - i] == 0 and view.calibration_id == [None, None]
    answers = []
    for _ in range(2):
        item = api.get(f"/v1/quizzes/{quiz_id}/next").json()
        label = "C" if item["question_id"] == qid else "A"
        r = api.post(
            f"/v1/quizzes/{quiz_id}/answers", json={"question_id": item["question_id"], "selected": label}
        )
        assert r.status_code == 200, r.text
        answers.append((item["question_id"], r.json()["score"], r.json()["max_score"]))
    assert sorted(answers) == sorted([(qid, 1, 2), (qid + 1, 1, 1)])


def test_live_comparison_pool_of_a_mixed_exam_is_the_calibrated_pool(api, session_factory):
    """What a bundle's items are checked against (the live calibration in the bundle's order)
    carries the GRM/GPCM thresholds: it is the calibrated pool, checksum and all."""
    from service.exposure.checks import _comparison_pool, _live_items

    _, frame = mixed_bank(api)
    calibrated = ItemPool.from_frame(frame, name="DEMO-EXAM")
    order = list(reversed(calibrated.item_id))  # a bundle may list its items in any order
    with session_factory() as session:
        live = _live_items(session, api.default_tenant, "DEMO-EXAM")
    pool = _comparison_pool({"items": [{"item_id": ref} for ref in order]}, live, "DEMO-EXAM", False)
    expected = calibrated.subset(calibrated.index_of(order))
    assert pool.is_polytomous and pool.sha256() == expected.sha256()
    np.testing.assert_array_equal(pool.thresholds, expected.thresholds)


# ---------------------------------------------------------------------------- bundles
def mixed_bundle(pool: ItemPool) -> dict:
    """A validated Sympson-Hetter bundle of the mixed pool (its items carry model and thresholds)."""
    from qbank.exposure import build_bundle, calibrate_exposure, validate_exposure
    from qbank.stopping import FixedLength

    calibration = calibrate_exposure(pool, 0.5, stopping=FixedLength(4), n_examinees=2000, rng=0)
    validation = validate_exposure(calibration, n_examinees=4000, rng=1)
    assert calibration.converged and validation.passed, validation.problems
    return build_bundle(calibration, validation)


def test_mixed_bundle_is_accepted_promoted_and_served_as_the_core_runs_it(api, session_factory):
    from qbank.polytomous import category_probabilities
    from qbank.rules import rules_from_bundle

    scores, frame = mixed_bank(api)
    qids = sorted(scores)
    pool = ItemPool.from_frame(frame, name="DEMO-EXAM")
    bundle = mixed_bundle(pool)
    assert any("thresholds" in item for item in bundle["items"])
    r = api.post("/v1/admin/exposure/bundles", json=bundle, **ADMIN)
    assert r.status_code == 201, r.text
    assert api.post(f"/v1/admin/exposure/bundles/{r.json()['id']}/promote", **ADMIN).status_code == 200
    flag = {"value_json": {"value": bundle["selector"]}}
    assert api.put("/v1/admin/flags/selector_strategy", json=flag, **ADMIN).status_code == 200

    rng = np.random.default_rng(20)
    theta, draws = rng.normal(size=3), rng.random((3, 4))

    def category(s: int, position: int, i: int) -> int:
        """The student's score on pool item i: the number of categories whose P(X >= k) exceeds u."""
        p = category_probabilities(
            theta[s], pool.a[i], pool.b[i], pool.c[i], pool.D[i], pool.model_codes[i], pool.threshold_table[i]
        )
        return int((draws[s, position] > np.cumsum(p)[:-1]).sum())

    rules = rules_from_bundle(bundle, pool)
    for s in range(3):
        user = f"poly{s}"
        quiz_id = api.post(
            "/v1/quizzes", user=user, json={"filters": {"num_questions": 4, "mode": "exam"}}
        ).json()["quiz_id"]
        for position in range(4):
            qid = api.get(f"/v1/quizzes/{quiz_id}/next", user=user).json()["question_id"]
            want = category(s, position, qids.index(qid))
            label = next(k for k, v in scores[qid].items() if v == want)
            r = api.post(
                f"/v1/quizzes/{quiz_id}/answers", user=user, json={"question_id": qid, "selected": label}
            )
            assert r.status_code == 200, r.text
        summary = api.get(f"/v1/quizzes/{quiz_id}", user=user).json()
        assert summary["rules"]["bundle_id"] is not None and summary["rules"]["k_from_bundle"] is True
        record = run_test(rules, pool, quiz_id, lambda position, i, s=s: category(s, position, i))
        with session_factory() as session:
            stored = session.execute(
                select(UserResponse.question_id, UserResponse.theta_after, UserResponse.se_after)
                .where(UserResponse.quiz_id == quiz_id)
                .order_by(UserResponse.position)
            ).all()
        assert [qids[i] for i in record.items] == [r.question_id for r in stored]
        assert list(zip(record.theta_after, record.se_after)) == [(r.theta_after, r.se_after) for r in stored]
        assert api.get(f"/v1/admin/quizzes/{quiz_id}/audit", **ADMIN).json()["identical"] is True


def test_bundle_calibration_must_fit_the_option_scores(api, session_factory):
    """A bundle carrying a calibration is promoted only when each GRM/GPCM item has as many
    categories as its question has option scores; its thresholds then become the live ones."""
    from qbank.exposure import bundle_sha256
    from qbank.exposure._bundle import _pool_from_items

    _, frame = mixed_bank(api)
    pool = ItemPool.from_frame(frame, name="DEMO-EXAM")
    bundle = mixed_bundle(pool)

    def carried(edit) -> dict:
        changed = json.loads(json.dumps(bundle))
        edit(next(item for item in changed["items"] if item.get("model") == "GRM"))
        changed["pool"]["sha256"] = _pool_from_items(changed).sha256()
        changed["bundle_sha256"] = bundle_sha256(changed)
        return changed

    grm_ref = next(item["item_id"] for item in bundle["items"] if item.get("model") == "GRM")
    too_many = carried(
        lambda item: item.update(thresholds=[*item["thresholds"], max(item["thresholds"]) + 1])
    )
    r = api.post("/v1/admin/exposure/bundles", json=too_many, params={"with_calibration": "true"}, **ADMIN)
    assert r.status_code == 201, r.text
    r = api.post(f"/v1/admin/exposure/bundles/{r.json()['id']}/promote", **ADMIN)
    assert r.status_code == 422 and f"'{grm_ref} (4 in the calibration, 3 option scores)'" in r.text, r.text

    shifted = carried(lambda item: item.update(thresholds=[t + 0.125 for t in item["thresholds"]]))
    r = api.post("/v1/admin/exposure/bundles", json=shifted, params={"with_calibration": "true"}, **ADMIN)
    assert r.status_code == 201, r.text
    assert api.post(f"/v1/admin/exposure/bundles/{r.json()['id']}/promote", **ADMIN).status_code == 200
    expected = next(item for item in shifted["items"] if item["item_id"] == grm_ref)
    with session_factory() as session:
        from service.models import Question

        row = session.execute(
            select(ItemCalibration.model, ItemCalibration.thresholds, ItemCalibration.source)
            .join(Question, Question.id == ItemCalibration.question_id)
            .where(Question.external_ref == grm_ref, ItemCalibration.is_current)
        ).one()
    assert (row.model, row.thresholds) == ("GRM", expected["thresholds"]) and row.source.startswith("bundle:")


def test_nightly_job_on_a_mixed_exam_keeps_the_categories(api, session_factory):
    """`qbank reestimate --mode simulate` on a mixed exam with little data: every GRM/GPCM item
    of the staged draft keeps its model and number of categories, with its live thresholds
    unless it was re-estimated (tests/service/test_reestimate_polytomous.py checks that the
    re-estimates move towards the truth), so the draft is accepted and promotes against the
    live calibration."""
    from service.exposure.reestimate import stage_reestimated_bundle

    scores, frame = mixed_bank(api)
    flag = {"value_json": {"value": "randomesque", "k": 12}}  # spreads the responses over the items
    assert api.put("/v1/admin/flags/selector_strategy", json=flag, **ADMIN).status_code == 200
    rng = np.random.default_rng(7)
    for s in range(36):
        user = f"night{s}"
        quiz_id = api.post(
            "/v1/quizzes", user=user, json={"filters": {"num_questions": 6, "mode": "exam"}}
        ).json()["quiz_id"]
        for _ in range(6):
            qid = api.get(f"/v1/quizzes/{quiz_id}/next", user=user).json()["question_id"]
            label = rng.choice(sorted(scores[qid]))
            r = api.post(
                f"/v1/quizzes/{quiz_id}/answers", user=user, json={"question_id": qid, "selected": label}
            )
            assert r.status_code == 200, r.text
    with session_factory() as session:
        out = stage_reestimated_bundle(
            session,
            api.default_tenant,
            "nightly",
            "DEMO-EXAM",
            r_max=0.5,
            min_quizzes=30,
            min_responses=8,
            n_examinees=2000,
            validation_examinees=4000,
        )
    notes = out["notes"]
    assert any(n.startswith("GRM and GPCM items re-estimated in two runs") for n in notes), notes
    from service.models import ExposureBundle

    with session_factory() as session:
        document = session.scalars(select(ExposureBundle)).one().document
    live = ItemPool.from_frame(frame)
    carried = {item["item_id"]: item for item in document["items"]}
    for ref, code, steps in zip(live.item_id, live.model_codes, live.thresholds):
        if code:
            steps = steps[~np.isnan(steps)].tolist()
            assert carried[ref]["model"] == ["", "GRM", "GPCM"][code]
            assert len(carried[ref]["thresholds"]) == len(steps)
            assert (carried[ref]["thresholds"] == steps) == (ref not in out["recalibrated"]), ref
    r = api.post(f"/v1/admin/exposure/bundles/{out['bundle']['id']}/promote", **ADMIN)
    assert r.status_code == 200, r.text
