"""Authoring: option validation, versions, publishing per exam, calibration import."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from service.models import AuditLog, ItemCalibration, QuestionVersion

AUTHOR = {"user": "ann", "roles": ["author", "publisher"]}


def question(**changes):
    body = {
        "external_ref": "Q-1",
        "topic_name": "fractions",
        "stem_md": "What is 1/2 + 1/4?",
        "lead_in": "Pick one",
        "rationale_md": "1/2 = 2/4, so 2/4 + 1/4 = 3/4.",
        "difficulty_label": "easy",
        "options": [
            {"label": "A", "text_md": "3/4", "is_correct": True},
            {"label": "B", "text_md": "2/6", "is_correct": False},
            {"label": "C", "text_md": "1/8", "is_correct": False},
        ],
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    "options, message",
    [
        (
            [
                {"label": "A", "text_md": "x", "is_correct": True},
                {"label": "a", "text_md": "y", "is_correct": False},
            ],
            "option labels must be unique; repeated: ['A']",
        ),
        (
            [
                {"label": "A", "text_md": "x", "is_correct": False},
                {"label": "B", "text_md": "y", "is_correct": False},
            ],
            "exactly one option must be correct; got 0",
        ),
        (
            [
                {"label": "A", "text_md": "x", "is_correct": True},
                {"label": "B", "text_md": "y", "is_correct": True},
            ],
            "exactly one option must be correct; got 2 (['A', 'B'])",
        ),
        ([{"label": "A", "text_md": "x", "is_correct": True}], "at least 2 items"),
        (
            [
                {"label": "1", "text_md": "x", "is_correct": True},
                {"label": "B", "text_md": "y", "is_correct": False},
            ],
            "should match pattern",
        ),
    ],
)
def test_options_are_validated(api, options, message):
    r = api.post("/v1/author/questions", json=question(options=options), **AUTHOR)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][:2] == ["body", "options"] and message in r.json()["detail"][0]["msg"]


def test_edit_makes_a_draft_and_publishing_switches_the_live_version(api, session_factory, take_quiz):
    created = api.post("/v1/author/questions", json=question(), **AUTHOR).json()
    qid = created["question_id"]
    assert (created["version"], created["state"]) == (1, "draft")
    r = api.post("/v1/quizzes", json={"filters": {"num_questions": 1}})
    assert r.status_code == 404  # a draft is not served
    assert api.post(f"/v1/author/publish/{qid}", **AUTHOR).json()["version"] == 1
    assert api.post("/v1/author/questions", json=question(stem_md="again"), **AUTHOR).status_code == 409

    edited = api.put(
        f"/v1/author/questions/{qid}",
        json=question(
            stem_md="What is 1/2 + 1/8?",
            options=[
                {"label": "A", "text_md": "5/8", "is_correct": True},
                {"label": "B", "text_md": "2/10", "is_correct": False},
            ],
        ),
        **AUTHOR,
    ).json()
    assert (edited["version"], edited["state"]) == (2, "draft")
    quiz = api.post("/v1/quizzes", json={"filters": {"num_questions": 1}}).json()["quiz_id"]
    served = api.get(f"/v1/quizzes/{quiz}/next").json()
    assert (served["version"], served["payload"]["stem_md"]) == (1, "What is 1/2 + 1/4?")

    assert api.post(f"/v1/author/publish/{qid}", **AUTHOR).json()["version"] == 2
    # The running quiz keeps the version it was served; a new quiz gets version 2.
    assert api.get(f"/v1/quizzes/{quiz}/next").json()["version"] == 1
    assert api.post(f"/v1/quizzes/{quiz}/answers", json={"question_id": qid, "selected": "A"}).json()[
        "correct"
    ]
    quiz2 = api.post("/v1/quizzes", json={"filters": {"num_questions": 1}}).json()["quiz_id"]
    assert api.get(f"/v1/quizzes/{quiz2}/next").json()["payload"]["stem_md"] == "What is 1/2 + 1/8?"
    detail = api.get(f"/v1/author/questions/{qid}", **AUTHOR).json()
    assert [(v["version"], v["state"]) for v in detail["versions"]] == [(1, "retired"), (2, "published")]
    assert detail["publications"] == {"DEMO-EXAM": 2}
    assert detail["versions"][1]["options"][0] == {
        "label": "A",
        "text_md": "5/8",
        "is_correct": True,
        "score": 1,
    }

    # Publishing version 1 for a second exam keeps it live there.
    r = api.post(f"/v1/author/publish/{qid}?exam_code=OTHER&version=1", **AUTHOR)
    assert r.json() == {"published": True, "question_id": qid, "version": 1, "exam_code": "OTHER"}
    assert api.get(f"/v1/author/questions/{qid}", **AUTHOR).json()["versions"][0]["state"] == "published"
    assert api.post(f"/v1/author/publish/{qid}?version=9", **AUTHOR).status_code == 404
    assert api.post("/v1/author/publish/999999", **AUTHOR).status_code == 404
    assert api.put("/v1/author/questions/999999", json=question(), **AUTHOR).status_code == 404
    assert api.get(f"/v1/author/questions/{qid}", tenant="another-tenant", **AUTHOR).status_code == 404
    with session_factory() as session:
        actions = session.scalars(select(AuditLog.action).order_by(AuditLog.id)).all()
    assert actions == [
        "question.create",
        "question.publish",
        "question.edit",
        "question.publish",
        "question.publish",
    ]


def test_calibration_upload_ties_parameters_to_the_live_version(api, session_factory):
    admin = {"user": "root", "roles": ["admin"]}
    ids = {}
    for ref in ("CAL-1", "CAL-2"):
        ids[ref] = api.post("/v1/author/questions", json=question(external_ref=ref), **AUTHOR).json()[
            "question_id"
        ]
        api.post(f"/v1/author/publish/{ids[ref]}", **AUTHOR)
    api.put(
        f"/v1/author/questions/{ids['CAL-1']}", json=question(external_ref="CAL-1", stem_md="v2"), **AUTHOR
    )
    csv = b"item_id,a,b,c,D\nCAL-1,1.2,-0.5,0.2,1.0\nCAL-2,0.8,1.5,0.1,1.7\n"
    r = api.post("/v1/admin/calibrations", files={"file": ("round1.csv", csv, "text/csv")}, **admin)
    assert r.status_code == 200 and r.json() == {
        "imported": 2,
        "source": "round1.csv",
        "model": "3PL",
        "skipped": [],
        "kept_poorly_determined": [],
    }
    r = api.post(
        "/v1/admin/calibrations",
        files={"file": ("round2.csv", b"item_id,a,b,c\nCAL-1,1.3,-0.4,0.2\n", "text/csv")},
        **admin,
    )
    assert r.status_code == 200
    with session_factory() as session:
        rows = session.execute(
            select(
                ItemCalibration.question_id,
                QuestionVersion.version,
                ItemCalibration.b,
                ItemCalibration.D,
                ItemCalibration.is_current,
                ItemCalibration.source,
            )
            .join(QuestionVersion, QuestionVersion.id == ItemCalibration.question_version_id)
            .order_by(ItemCalibration.id)
        ).all()
    # CAL-1 has a draft version 2; the calibration belongs to the published version 1.
    assert rows == [
        (ids["CAL-1"], 1, -0.5, 1.0, False, "round1.csv"),
        (ids["CAL-2"], 1, 1.5, 1.7, True, "round1.csv"),
        (ids["CAL-1"], 1, -0.4, 1.0, True, "round2.csv"),
    ]
    detail = api.get(f"/v1/author/questions/{ids['CAL-1']}", **AUTHOR).json()
    assert detail["versions"][0]["calibration"]["b"] == -0.4 and detail["versions"][1]["calibration"] is None

    bad = [
        (b"item_id,a,b,c\nCAL-1,-1,0,0.2\n", "a must be in (0, 20]; bad items: ['CAL-1']"),
        (b"item_id,a,b\nCAL-1,1,0\n", "missing column(s) ['c']"),
        (b"item_id,a,b,c\nNOPE,1,0,0.2\n", "match no question's external_ref, e.g. ['NOPE']"),
        (b"item_id,a,b,c\nCAL-1,1,zero,0.2\n", "column 'b' must be a finite number; bad items: ['CAL-1']"),
    ]
    for content, message in bad:
        r = api.post("/v1/admin/calibrations", files={"file": ("bad.csv", content, "text/csv")}, **admin)
        assert r.status_code == 422 and message in r.json()["detail"], r.text

    # With the calibration report: respondents recorded, a poorly determined item refused, skipped or kept.
    csv = b"item_id,a,b,c,D\nCAL-1,1.100000,0.300000,0.150000,1.0\nCAL-2,0.900000,2.900000,0.200000,1.0\n"
    report = {
        "items": [
            {"item_id": "CAL-1", "a": 1.1, "b": 0.3, "c": 0.15, "n": 812, "poorly_determined": False},
            {"item_id": "CAL-2", "a": 0.9, "b": 2.9, "c": 0.2, "n": 97, "poorly_determined": True},
        ]
    }

    def upload(report_doc, **params):
        files = {
            "file": ("round3.csv", csv, "text/csv"),
            "report": ("round3.report.json", json.dumps(report_doc).encode(), "application/json"),
        }
        return api.post("/v1/admin/calibrations", files=files, params=params, **admin)

    r = upload(report)
    assert (
        r.status_code == 422 and "1 item(s) are poorly determined in round3.report.json" in r.json()["detail"]
    )
    assert "['CAL-2']; pass poorly_determined=skip to import the others" in r.json()["detail"]
    r = upload(report, poorly_determined="skip")
    assert r.status_code == 200 and (r.json()["imported"], r.json()["skipped"]) == (1, ["CAL-2"]), r.text
    with session_factory() as session:
        n_respondents = session.execute(
            select(ItemCalibration.question_id, ItemCalibration.n_respondents).where(
                ItemCalibration.source == "round3.csv"
            )
        ).all()
    assert n_respondents == [(ids["CAL-1"], 812)]
    r = upload(report, poorly_determined="keep")
    assert r.status_code == 200 and r.json()["kept_poorly_determined"] == ["CAL-2"]
    with session_factory() as session:
        audited = [
            row.details
            for row in session.scalars(
                select(AuditLog).where(AuditLog.action == "calibration.import").order_by(AuditLog.id)
            )
        ][-2:]
    assert [a.get("skipped_poorly_determined") for a in audited] == [["CAL-2"], None]
    assert [a.get("kept_poorly_determined") for a in audited] == [None, ["CAL-2"]]
    assert audited[0]["report"] == "round3.report.json"
    assert upload(report, poorly_determined="maybe").status_code == 422
    other = {"items": [dict(report["items"][0], b=0.5), report["items"][1]]}
    r = upload(other, poorly_determined="keep")
    assert r.status_code == 422 and "has other parameters than round3.csv for 1 item(s): ['CAL-1']" in r.text
    r = upload({"items": [{"item_id": "CAL-1", "a": 1.1}]})
    assert r.status_code == 422 and "lack column(s)" in r.json()["detail"]
    r = api.post(
        "/v1/admin/calibrations",
        files={"file": ("round3.csv", csv, "text/csv"), "report": ("r.json", b"{oops", "application/json")},
        **admin,
    )
    assert r.status_code == 422 and "not a readable calibration report" in r.json()["detail"]
