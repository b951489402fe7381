"""Admin: exposure items, sh_p, the re-estimation heuristic on served sessions, users."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.models import AuditLog, QuizSession

ADMIN = {"user": "root", "roles": ["admin"]}
AUTHOR = {"user": "ann", "roles": ["author", "publisher"]}


def publish(api, ref, topic, label):
    body = {
        "external_ref": ref,
        "topic_name": topic,
        "stem_md": f"stem {ref}",
        "rationale_md": "because",
        "difficulty_label": label,
        "options": [
            {"label": "A", "text_md": "yes", "is_correct": True},
            {"label": "B", "text_md": "no", "is_correct": False},
        ],
    }
    qid = api.post("/v1/author/questions", json=body, **AUTHOR).json()["question_id"]
    assert api.post(f"/v1/author/publish/{qid}", **AUTHOR).status_code == 200
    return qid


def serve(api, user, topics, n):
    quiz = api.post(
        "/v1/quizzes", user=user, json={"filters": {"num_questions": n, "topics": topics}}
    ).json()["quiz_id"]
    served = []
    for _ in range(n):
        item = api.get(f"/v1/quizzes/{quiz}/next", user=user).json()
        served.append(item["question_id"])
        api.post(
            f"/v1/quizzes/{quiz}/answers",
            user=user,
            json={"question_id": item["question_id"], "selected": "A"},
        )
    return quiz, served


def test_reestimate_is_the_scaffold_heuristic_on_exposure_rates(api, session_factory):
    x = publish(api, "X", "t1", "medium")
    y = publish(api, "Y", "t2", "hard")
    z = publish(api, "Z", "t3", "easy")
    csv = b"item_id,a,b,c\nX,1,0,0\nY,1,1,0\nZ,1,-1,0\n"  # X is the most informative at theta = 0
    assert (
        api.post("/v1/admin/calibrations", files={"file": ("cal.csv", csv, "text/csv")}, **ADMIN).status_code
        == 200
    )
    assert api.post(
        "/v1/admin/exposure/set", json={"question_id": x, "version": 1, "sh_p": 0.0}, **ADMIN
    ).json() == {"ok": True}
    # K is stored once, in a bundle revision: the change is a new unvalidated revision of the
    # exam's K = 1 root, in force once promoted (here with force, audited as such).
    (revision,) = api.get("/v1/admin/exposure/bundles?status=unvalidated", **ADMIN).json()[:1]
    assert revision["parent_id"] and revision["validated"] is False and revision["created_by"] == "root"
    assert revision["revision"]["changes"] == [{"item_id": "X", "sh_p_old": 1.0, "sh_p_new": 0.0}]
    r = api.post(f"/v1/admin/exposure/bundles/{revision['id']}/promote", **ADMIN)
    assert r.status_code == 409 and "force=true" in r.json()["detail"]
    r = api.post(f"/v1/admin/exposure/bundles/{revision['id']}/promote?force=true", **ADMIN)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert (
        api.put(
            "/v1/admin/cohorts",
            json={"user_id": "sh-user", "cohort_key": "selector_strategy", "cohort_value": "sympson_hetter"},
            **ADMIN,
        ).status_code
        == 200
    )
    # Sessions 1-4 use maximum information (sh_p does not apply to them).
    assert serve(api, "u1", ["t1"], 1)[1] == [x]
    assert serve(api, "u2", ["t1"], 1)[1] == [x]
    assert serve(api, "u3", ["t1", "t2"], 2)[1] == [x, y]
    assert serve(api, "u4", ["t2"], 1)[1] == [y]
    # Session 5 (Sympson-Hetter): X is selected, withdrawn by its draw (K = 0), then Y is administered.
    _sh_quiz, served = serve(api, "sh-user", ["t1", "t2"], 1)
    assert served == [y]
    # An old session outside the 7-day window does not count.
    old_quiz, served = serve(api, "u6", ["t3"], 1)
    assert served == [z]
    with session_factory() as session:
        old = session.get(QuizSession, old_quiz)
        old.created_at = old.created_at - timedelta(days=30)
        session.commit()

    r = api.post("/v1/admin/exposure/reestimate", json={"tau": 0.5, "days": 7}, **ADMIN)
    assert r.status_code == 200
    out = r.json()
    # 5 sessions; X and Y each administered in 3 (exposure rate 0.6 > tau): K <- K * tau / 0.6,
    # X's K = 0 clipped to the floor 0.05.
    assert (out["updated"], out["sessions"]) == (2, 5)
    by_id = {row["question_id"]: row for row in out["items"]}
    assert by_id[x]["exposure_rate"] == pytest.approx(0.6) and by_id[y]["exposure_rate"] == pytest.approx(0.6)
    assert by_id[x]["sh_p_old"] == 0.0 and by_id[x]["sh_p_new"] == pytest.approx(0.05)
    assert by_id[y]["sh_p_old"] == 1.0 and by_id[y]["sh_p_new"] == pytest.approx(0.5 / 0.6)
    assert out["revision_id"]
    items = {row["question_id"]: row for row in api.get("/v1/admin/exposure/items", **ADMIN).json()}
    # In force: the promoted revision's K; pending: the heuristic's unvalidated revision.
    assert (items[x]["sh_p"], items[x]["pending_sh_p"], items[x]["overridden"]) == (
        0.0,
        pytest.approx(0.05),
        True,
    )
    assert items[z]["sh_p"] == 1.0 and items[z]["overridden"] is False
    assert [items[q]["recent_attempts"] for q in (x, y, z)] == [3, 3, 1]
    listed = api.get("/v1/admin/exposure/items?limit=2", **ADMIN).json()
    assert len(listed) == 2 and listed[0]["recent_attempts"] >= listed[1]["recent_attempts"]

    # Below tau, K grows by (tau - rate) / 4: 0.6 < 0.9 gives K * 1.075.
    out = api.post(
        "/v1/admin/exposure/reestimate", json={"tau": 0.9, "days": 7, "ceil": 0.95}, **ADMIN
    ).json()
    assert {row["question_id"]: row["sh_p_new"] for row in out["items"]} == pytest.approx(
        {x: 0.05 * 1.075, y: 0.5 / 0.6 * 1.075}
    )
    with session_factory() as session:
        actions = session.scalars(select(AuditLog.action).where(AuditLog.action.like("exposure.%"))).all()
        promotions = session.scalars(
            select(AuditLog.action).where(AuditLog.action.like("bundle.promote%"))
        ).all()
    assert actions == ["exposure.set", "exposure.reestimate", "exposure.reestimate"]
    assert promotions == ["bundle.promote_unvalidated"]


def test_admin_validation_and_unknown_items(api):
    x = publish(api, "X", "t1", "medium")
    r = api.post("/v1/admin/exposure/set", json={"question_id": 999999, "version": 1, "sh_p": 0.5}, **ADMIN)
    assert r.status_code == 404 and "question 999999 version 1 not found" in r.json()["detail"]
    r = api.post(
        "/v1/admin/exposure/set",
        json={"question_id": x, "version": 1, "sh_p": 0.5},
        tenant="tenant-other",
        **ADMIN,
    )
    assert r.status_code == 404
    for body, field in [
        ({"question_id": x, "version": 1, "sh_p": 1.5}, "sh_p"),
        ({"question_id": x, "version": 0, "sh_p": 0.5}, "version"),
        ({"question_id": x, "sh_p": 0.5}, "version"),
    ]:
        r = api.post("/v1/admin/exposure/set", json=body, **ADMIN)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == field
    r = api.post("/v1/admin/exposure/reestimate", json={"floor": 0.9, "ceil": 0.5}, **ADMIN)
    assert r.status_code == 422 and "floor (0.9) must be <= ceil (0.5)" in r.text
    assert api.post("/v1/admin/exposure/reestimate", json={"tau": 0}, **ADMIN).status_code == 422
    r = api.put(
        "/v1/admin/cohorts",
        json={"user_id": "u", "cohort_key": "selector_strategy", "cohort_value": "coin"},
        **ADMIN,
    )
    assert r.status_code == 422 and "'coin' is not a selection rule" in r.json()["detail"]


def test_admin_creates_users_who_can_log_in(api, tenant):
    r = api.post(
        "/v1/admin/users",
        json={"username": "carol", "password": "long-enough", "roles": ["student"]},
        **ADMIN,
    )
    assert r.status_code == 201 and r.json()["roles"] == ["student"] and r.json()["tenant_id"] == tenant
    assert (
        api.post(
            "/v1/admin/users",
            json={"username": "carol", "password": "long-enough", "roles": ["student"]},
            **ADMIN,
        ).status_code
        == 409
    )
    assert (
        api.post(
            "/v1/admin/users", json={"username": "dan", "password": "short", "roles": ["student"]}, **ADMIN
        ).status_code
        == 422
    )
    r = api.client.post("/v1/auth/login", json={"username": "carol", "password": "long-enough"})
    assert r.status_code == 200 and r.json()["roles"] == ["student"]
