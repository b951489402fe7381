"""The served items each process keeps for a quiz (``service.quiz_rows``), on SQLite and PostgreSQL.

A student whose requests alternate between two instances (two apps on one database, each with its
own kept rows) must get exactly the quiz one instance alone gives for the same answers: maximum
information with no bundle draws nothing at random, so the items, theta and SE must be equal
(``==``), every answer stored, and the audit must replay it identically.
"""

from __future__ import annotations

from exposure_support import SECRET, service_settings
from fastapi.testclient import TestClient
from sqlalchemy import select

from service.core.security import create_token
from service.exposure.audit import audit_quiz
from service.main import create_app
from service.models import QuizSession, UserResponse

TENANT = "00000000-0000-0000-0000-000000000001"
LENGTH = 12


def take(clients, loaded_bank, user: str, route) -> str:
    """A quiz of LENGTH items; ``route(position, step)`` picks the client of each request."""
    headers = {
        "Authorization": "Bearer " + create_token(user, ["student"], TENANT, secret=SECRET, ttl_minutes=30)
    }
    quiz_id = (
        clients[0]
        .post("/v1/quizzes", json={"filters": {"num_questions": LENGTH}}, headers=headers)
        .json()["quiz_id"]
    )
    for position in range(LENGTH):
        item = clients[route(position, "next")].get(f"/v1/quizzes/{quiz_id}/next", headers=headers)
        assert item.status_code == 200, item.text
        qid = item.json()["question_id"]
        label = loaded_bank.wrong[qid] if position % 3 == 0 else loaded_bank.key[qid]
        body = {"question_id": qid, "selected": label}
        r = clients[route(position, "answer")].post(
            f"/v1/quizzes/{quiz_id}/answers", json=body, headers=headers
        )
        assert r.status_code == 200, r.text
        # A replay on the other instance gets the stored result, not a conflict.
        again = clients[1 - route(position, "answer")].post(
            f"/v1/quizzes/{quiz_id}/answers", json=body, headers=headers
        )
        assert again.status_code == 200 and again.json() == r.json(), again.text
    return quiz_id


def test_alternating_instances_give_the_quiz_of_one_instance(db, loaded_bank, session_factory):
    with (
        TestClient(create_app(service_settings(db))) as first,
        TestClient(create_app(service_settings(db))) as second,
    ):
        alone = take([first, second], loaded_bank, "ada", lambda position, step: 0)
        mixed = take(
            [first, second],
            loaded_bank,
            "bea",
            lambda position, step: (position + (step == "answer")) % 2 if position % 4 else 0,
        )
    with session_factory() as session:

        def record(quiz_id):
            quiz = session.get(QuizSession, quiz_id)
            answers = session.scalars(
                select(UserResponse).where(UserResponse.quiz_id == quiz_id).order_by(UserResponse.position)
            ).all()
            return (
                quiz.status,
                quiz.n_answered,
                quiz.theta,
                quiz.se,
                [(a.position, a.question_id, a.option_label, a.theta_after, a.se_after) for a in answers],
            )

        assert record(mixed) == record(alone)
        assert record(mixed)[:2] == ("finished", LENGTH)
        assert audit_quiz(session, TENANT, mixed)["identical"]
