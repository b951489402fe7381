"""The scaffold's API test (qbank-backend/tests/test_api_e2e.py), run against our app in dev
mode: same endpoints, same payloads, same status codes. Adapted only to call the app through
a TestClient instead of a server on localhost:8000, and to use our default tenant."""


def auth(hdrs, token):
    hdrs["Authorization"] = f"Bearer {token}"
    return hdrs


def test_seed_and_quiz_flow(dev_api, tenant):
    s = dev_api.client
    r = s.post(
        "/v1/auth/mock-login",
        json={"user_id": "tester", "roles": ["author", "publisher", "student", "admin"]},
    )
    token = r.json()["access_token"]
    # create + publish question
    payload = {
        "external_ref": "E2E-1",
        "topic_name": "Cardiology",
        "exam_code": "DEMO-EXAM",
        "stem_md": "E2E stem",
        "lead_in": "Pick one",
        "rationale_md": "Because tests",
        "difficulty_label": "medium",
        "options": [
            {"label": "A", "text_md": "Alpha", "is_correct": True},
            {"label": "B", "text_md": "Bravo", "is_correct": False},
        ],
    }
    r = s.post(
        "/v1/author/questions", headers=auth({"Content-Type": "application/json"}, token), json=payload
    )
    assert r.status_code == 200, r.text
    qid = r.json()["question_id"]
    r = s.post(f"/v1/author/publish/{qid}", headers=auth({}, token))
    assert r.status_code == 200
    # create quiz
    r = s.post(
        "/v1/quizzes",
        headers=auth({"Content-Type": "application/json"}, token),
        json={
            "tenant_id": tenant,
            "adaptive": True,
            "filters": {"num_questions": 1, "mode": "tutor", "exam_code": "DEMO-EXAM"},
        },
    )
    assert r.status_code == 201, r.text
    quiz_id = r.json()["quiz_id"]
    # next question
    r = s.get(f"/v1/quizzes/{quiz_id}/next", headers=auth({}, token))
    assert r.status_code == 200, r.text
    question_id = r.json()["question_id"]
    # submit answer
    r = s.post(
        f"/v1/quizzes/{quiz_id}/answers",
        headers=auth({"Content-Type": "application/json"}, token),
        json={
            "question_id": question_id,
            "selected": "A",
            "time_taken_ms": 5000,
        },
    )
    assert r.status_code == 200, r.text
    # admin list + set + reestimate
    r = s.get("/v1/admin/exposure/items", headers=auth({}, token))
    assert r.status_code == 200
    r = s.post(
        "/v1/admin/exposure/set",
        headers=auth({"Content-Type": "application/json"}, token),
        json={"question_id": qid, "version": 1, "sh_p": 0.4},
    )
    assert r.status_code == 200, r.text
    r = s.post(
        "/v1/admin/exposure/reestimate",
        headers=auth({"Content-Type": "application/json"}, token),
        json={"tau": 0.2, "days": 7},
    )
    assert r.status_code == 200, r.text


def test_scaffold_payload_shapes(dev_api, tenant):
    """The scaffold's response fields are all there, with the scaffold's meaning."""
    h = dev_api.headers("tester", ["author", "publisher", "student", "admin"])
    s = dev_api.client
    qid = s.post(
        "/v1/author/questions",
        headers=h,
        json={
            "external_ref": "E2E-2",
            "topic_name": "Cardiology",
            "stem_md": "Which?",
            "lead_in": "Pick one",
            "rationale_md": "Because B",
            "options": [
                {"label": "a", "text_md": "Alpha", "is_correct": False},
                {"label": "b", "text_md": "Bravo", "is_correct": True},
            ],
        },
    ).json()["question_id"]
    assert s.post(f"/v1/author/publish/{qid}", headers=h).json() == {
        "published": True,
        "question_id": qid,
        "version": 1,
        "exam_code": "DEMO-EXAM",
    }
    quiz = s.post(
        "/v1/quizzes", headers=h, json={"tenant_id": tenant, "filters": {"num_questions": 1}}
    ).json()
    assert set(quiz) >= {"quiz_id", "question_ids", "expires_at", "mode"} and quiz["mode"] == "tutor"
    nxt = s.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=h).json()
    assert nxt["question_id"] == qid and nxt["version"] == 1
    assert nxt["payload"] == {
        "stem_md": "Which?",
        "lead_in": "Pick one",
        "options": [{"label": "A", "text": "Alpha"}, {"label": "B", "text": "Bravo"}],
    }
    result = s.post(
        f"/v1/quizzes/{quiz['quiz_id']}/answers",
        headers=h,
        json={"question_id": qid, "selected": "a", "time_taken_ms": 10},
    ).json()
    assert (result["correct"], result["correct_option"], result["explanation"]) == (
        False,
        "B",
        {"rationale_md": "Because B"},
    )
    assert isinstance(result["difficulty"], float)
    items = s.get("/v1/admin/exposure/items", headers=h).json()
    # The scaffold's fields, with issue 6's exposure figures beside them.
    scaffold_fields = ("question_id", "version", "topic_id", "sh_p", "recent_attempts")
    assert [{k: row[k] for k in scaffold_fields} for row in items] == [
        {
            "question_id": qid,
            "version": 1,
            "topic_id": items[0]["topic_id"],
            "sh_p": 1.0,
            "recent_attempts": 1,
        }
    ]
    assert (items[0]["exposure_rate"], items[0]["bundle_sh_p"]) == (1.0, None)
