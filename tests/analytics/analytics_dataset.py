"""A small hand-built data set for the analytics tests (loaded by conftest.py).

Two tenants, two exams, topics Fractions and Decimals, six questions (one deleted, one
with a retired first version), blueprint targets, six quizzes over two UTC days with
cohort-assigned selectors. A third tenant holds partial credit (issue 18): one quiz on the
22nd over a GRM-style item scored 0..3, a 0/1 item and an item scored 0..2, topic Ratios.
The expected view rows in test_analytics_views.py were worked out by hand from these rows;
keep the two in step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import insert

from service.analytics_models import BlueprintTarget
from service.db import make_engine
from service.models import (
    PoolSnapshot,
    Question,
    QuestionOption,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    Topic,
    UserResponse,
)

TENANT_A = "tenant-a"
TENANT_B = "tenant-b"
TENANT_P = "tenant-p"
UTC = UTC
PLUS_ONE = timezone(timedelta(hours=1))


def at(day: int, hour: int, minute: int = 0, tz=UTC) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=tz)


# option scores of each question version (0/1 items: the key A scores 1); the partial credit
# items of tenant P score 0..3 (version 81) and 0..2 (version 101), their key the top score
OPTION_SCORES = dict.fromkeys((11, 21, 31, 32, 41, 51, 61, 71, 91), (1, 0)) | {
    81: (0, 1, 2, 3),
    101: (0, 1, 2),
}


def _quiz(quiz_id, tenant, user, rule, source, status, served, answered, correct, theta, se, created):
    return dict(
        id=quiz_id,
        tenant_id=tenant,
        user_id=user,
        mode="tutor",
        adaptive=True,
        exam_code="EXAM-A",
        status=status,
        filters={},
        blueprint=None,
        selector={"rule": rule, "source": source},
        stopping={"rule": "fixed_length", "length": 3},
        pool_snapshot_id=f"snap-{tenant}",
        exposure_bundle_id=None,
        plan=None,
        withdrawn=[],
        n_served=served,
        n_answered=answered,
        n_correct=correct,
        theta=theta,
        se=se,
        finish_reason="length" if status == "finished" else None,
        created_at=created,
        expires_at=created + timedelta(hours=2),
        finished_at=created + timedelta(minutes=10) if status == "finished" else None,
    )


def load_dataset(url: str) -> None:
    """Insert the data set into the (migrated, empty) database at ``url``."""
    engine = make_engine(url, pool_size=1)
    t0 = at(1, 8)
    with engine.begin() as conn:
        conn.execute(
            insert(Topic),
            [
                dict(id=1, tenant_id=TENANT_A, parent_id=None, name="Fractions", blueprint_code="F"),
                dict(id=2, tenant_id=TENANT_A, parent_id=None, name="Decimals", blueprint_code="D"),
                dict(id=3, tenant_id=TENANT_B, parent_id=None, name="Fractions", blueprint_code=None),
                dict(id=4, tenant_id=TENANT_P, parent_id=None, name="Ratios", blueprint_code="R"),
            ],
        )
        conn.execute(
            insert(Question),
            [
                dict(
                    id=qid,
                    tenant_id=tenant,
                    external_ref=ref,
                    created_by="t",
                    created_at=t0,
                    is_deleted=deleted,
                )
                for qid, tenant, ref, deleted in [
                    (1, TENANT_A, "I1", False),
                    (2, TENANT_A, "I2", False),
                    (3, TENANT_A, "I3", False),
                    (4, TENANT_A, "I4", False),
                    (5, TENANT_A, "I5", False),
                    (6, TENANT_A, "I6", True),
                    (7, TENANT_B, "I1", False),
                    (8, TENANT_P, "P1", False),
                    (9, TENANT_P, "D1", False),
                    (10, TENANT_P, "P2", False),
                ]
            ],
        )
        # (version id, question, version, state, topic, difficulty label)
        versions = [
            (11, 1, 1, "published", 1, "easy"),
            (21, 2, 1, "published", 1, "medium"),
            (31, 3, 1, "retired", 1, "medium"),
            (32, 3, 2, "published", 2, "hard"),
            (41, 4, 1, "published", 2, "easy"),
            (51, 5, 1, "published", 2, None),
            (61, 6, 1, "published", 1, "easy"),
            (71, 7, 1, "published", 3, "easy"),
            (81, 8, 1, "published", 4, "hard"),
            (91, 9, 1, "published", 4, "easy"),
            (101, 10, 1, "published", 4, "hard"),
        ]
        conn.execute(
            insert(QuestionVersion),
            [
                dict(
                    id=vid,
                    question_id=qid,
                    version=v,
                    state=state,
                    stem_md="s",
                    lead_in="l",
                    rationale_md="r",
                    difficulty_label=label,
                    bloom_level=None,
                    topic_id=topic,
                    tags={},
                    assets=[],
                    references=[],
                    created_by="t",
                    created_at=t0,
                )
                for vid, qid, v, state, topic, label in versions
            ],
        )
        conn.execute(
            insert(QuestionOption),
            [
                dict(
                    question_version_id=vid,
                    option_label="ABCD"[k],
                    option_text_md=f"option {k}",
                    is_correct=score == max(scores),
                    score=score,
                )
                for vid, scores in OPTION_SCORES.items()
                for k, score in enumerate(scores)
            ],
        )
        conn.execute(
            insert(QuestionPublication),
            [
                dict(
                    tenant_id=tenant,
                    question_id=qid,
                    exam_code=exam,
                    live_version=v,
                    question_version_id=vid,
                    published_by="t",
                    published_at=t0,
                )
                for tenant, qid, exam, v, vid in [
                    (TENANT_A, 1, "EXAM-A", 1, 11),
                    (TENANT_A, 2, "EXAM-A", 1, 21),
                    (TENANT_A, 3, "EXAM-A", 2, 32),
                    (TENANT_A, 4, "EXAM-A", 1, 41),
                    (TENANT_A, 4, "EXAM-B", 1, 41),
                    (TENANT_A, 5, "EXAM-A", 1, 51),
                    (TENANT_A, 6, "EXAM-A", 1, 61),
                    (TENANT_B, 7, "EXAM-A", 1, 71),
                    (TENANT_P, 8, "EXAM-A", 1, 81),
                    (TENANT_P, 9, "EXAM-A", 1, 91),
                    (TENANT_P, 10, "EXAM-A", 1, 101),
                ]
            ],
        )
        conn.execute(
            insert(BlueprintTarget),
            [
                dict(
                    tenant_id=TENANT_A,
                    exam_code="EXAM-A",
                    topic_id=topic,
                    difficulty_label=label,
                    target_items=n,
                    updated_by="t",
                    updated_at=t0,
                )
                for topic, label, n in [(1, "easy", 2), (1, "medium", 1), (2, "hard", 3), (2, "medium", 2)]
            ],
        )
        conn.execute(
            insert(PoolSnapshot),
            [
                dict(
                    id=f"snap-{tenant}",
                    tenant_id=tenant,
                    exam_code="EXAM-A",
                    n_items=1,
                    items={},
                    created_at=t0,
                )
                for tenant in (TENANT_A, TENANT_B, TENANT_P)
            ],
        )
        conn.execute(
            insert(QuizSession),
            [
                _quiz(
                    "qa",
                    TENANT_A,
                    "alice",
                    "max_info",
                    "cohort",
                    "finished",
                    3,
                    3,
                    2,
                    0.5,
                    0.6,
                    at(20, 9, 55),
                ),
                _quiz(
                    "qb",
                    TENANT_A,
                    "alice",
                    "max_info",
                    "cohort",
                    "finished",
                    2,
                    2,
                    2,
                    1.0,
                    0.7,
                    at(21, 8, 55),
                ),
                _quiz(
                    "qc",
                    TENANT_A,
                    "bob",
                    "sympson_hetter",
                    "cohort",
                    "finished",
                    2,
                    2,
                    1,
                    -0.2,
                    0.75,
                    at(20, 23, 20),
                ),
                _quiz(
                    "qd",
                    TENANT_A,
                    "carol",
                    "sympson_hetter",
                    "cohort",
                    "active",
                    1,
                    0,
                    0,
                    0.0,
                    1.0,
                    at(21, 11, 55),
                ),
                _quiz("qe", TENANT_A, "dave", "max_info", "default", "active", 0, 0, 0, 0.0, 1.0, at(21, 12)),
                _quiz(
                    "qf",
                    TENANT_B,
                    "alice",
                    "max_info",
                    "cohort",
                    "finished",
                    1,
                    1,
                    0,
                    -0.5,
                    0.9,
                    at(20, 10, 55),
                ),
                # 1 of 3 answers with full credit, 3 of 6 points
                _quiz(
                    "qg", TENANT_P, "erin", "max_info", "cohort", "finished", 3, 3, 1, 0.1, 0.6, at(22, 9, 55)
                ),
            ],
        )
        # (quiz, position, question, version id, served at); qc's times are given in UTC+1
        # and fall on the 20th in UTC although they read as the 21st locally.
        served = [
            ("qa", 0, 1, 11, at(20, 9, 59)),
            ("qa", 1, 2, 21, at(20, 10, 0)),
            ("qa", 2, 3, 32, at(20, 10, 1)),
            ("qb", 0, 1, 11, at(21, 8, 59)),
            ("qb", 1, 4, 41, at(21, 9, 1)),
            ("qc", 0, 2, 21, at(21, 0, 29, PLUS_ONE)),
            ("qc", 1, 4, 41, at(21, 0, 39, PLUS_ONE)),
            ("qd", 0, 1, 11, at(21, 12)),
            ("qf", 0, 7, 71, at(20, 11)),
            ("qg", 0, 8, 81, at(22, 9, 59)),
            ("qg", 1, 9, 91, at(22, 10)),
            ("qg", 2, 10, 101, at(22, 10, 1)),
        ]
        conn.execute(
            insert(QuizItem),
            [
                dict(
                    quiz_id=quiz,
                    position=pos,
                    pool_index=pos,
                    question_id=qid,
                    version=1 if vid != 32 else 2,
                    question_version_id=vid,
                    calibration_id=None,
                    theta_before=0.0,
                    se_before=1.0,
                    served_at=when,
                )
                for quiz, pos, qid, vid, when in served
            ],
        )
        # (id, tenant, quiz, position, user, question, version id, correct, time ms, theta, se,
        # created at[, score]); without a score 1 when correct, else 0, as the service scores 0/1 items
        answers = [
            (1, TENANT_A, "qa", 0, "alice", 1, 11, True, 1000, 0.3, 0.9, at(20, 10)),
            (2, TENANT_A, "qa", 1, "alice", 2, 21, False, 3000, -0.1, 0.8, at(20, 10, 1)),
            (3, TENANT_A, "qa", 2, "alice", 3, 32, True, None, 0.5, 0.6, at(20, 10, 2)),
            (4, TENANT_A, "qb", 0, "alice", 1, 11, True, 2000, 0.8, 0.85, at(21, 9)),
            (5, TENANT_A, "qb", 1, "alice", 4, 41, True, 4000, 1.0, 0.7, at(21, 9, 5)),
            (6, TENANT_A, "qc", 0, "bob", 2, 21, True, 1500, 0.4, 0.9, at(21, 0, 30, PLUS_ONE)),
            (7, TENANT_A, "qc", 1, "bob", 4, 41, False, 2500, -0.2, 0.75, at(21, 0, 40, PLUS_ONE)),
            (8, TENANT_B, "qf", 0, "alice", 7, 71, False, 500, -0.5, 0.9, at(20, 11, 1)),
            # partial credit: 2 of 3, full credit on the 0/1 item, 0 of 2
            (9, TENANT_P, "qg", 0, "erin", 8, 81, False, 1000, 0.2, 0.8, at(22, 10), 2),
            (10, TENANT_P, "qg", 1, "erin", 9, 91, True, 2000, 0.5, 0.7, at(22, 10, 1), 1),
            (11, TENANT_P, "qg", 2, "erin", 10, 101, False, 3000, 0.1, 0.6, at(22, 10, 2), 0),
        ]
        conn.execute(
            insert(UserResponse),
            [
                dict(
                    id=rid,
                    tenant_id=tenant,
                    quiz_id=quiz,
                    position=pos,
                    user_id=user,
                    question_id=qid,
                    version=1 if vid != 32 else 2,
                    question_version_id=vid,
                    calibration_id=None,
                    option_label="A",
                    is_correct=ok,
                    time_taken_ms=ms,
                    server_elapsed_ms=100,
                    client_latency_ms=None,
                    theta_before=0.0,
                    se_before=1.0,
                    theta_after=theta,
                    se_after=se,
                    created_at=when,
                    score=scored[0] if scored else int(ok),
                )
                for rid, tenant, quiz, pos, user, qid, vid, ok, ms, theta, se, when, *scored in answers
            ],
        )
    engine.dispose()
