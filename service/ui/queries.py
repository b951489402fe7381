"""Read-only look-ups that pages need for display and the API does not return.

Nothing here decides anything: which quiz item comes next, what a student may see, how
exposure is counted all stay in ``service.quizzes`` and ``service.admin``. These queries only
fetch names and labels to show beside those results, always scoped to the caller's tenant.
"""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from service.models import (
    ItemCalibration,
    Question,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    Topic,
    User,
    utcnow,
)


def exam_codes(session: Session, tenant_id: str) -> list[str]:
    """Exams with at least one published item, sorted."""
    return sorted(
        session.scalars(
            select(QuestionPublication.exam_code).where(QuestionPublication.tenant_id == tenant_id).distinct()
        )
    )


def open_quizzes(session: Session, tenant_id: str, user_id: str, limit: int = 5) -> list[QuizSession]:
    """The caller's quizzes that can still be resumed, newest first."""
    return list(
        session.scalars(
            select(QuizSession)
            .where(
                QuizSession.tenant_id == tenant_id,
                QuizSession.user_id == user_id,
                QuizSession.status == "active",
                QuizSession.expires_at > utcnow(),
            )
            .order_by(QuizSession.created_at.desc())
            .limit(limit)
        )
    )


def display_name(session: Session, tenant_id: str, user_id: str) -> str:
    """The username of a password account; the token's subject for dev sign-ins."""
    username = session.scalar(select(User.username).where(User.id == user_id, User.tenant_id == tenant_id))
    return username or user_id


def quiz_item_versions(session: Session, quiz_id: str) -> dict[int, int]:
    """Question version id served at each position of a quiz (call after the owner check)."""
    return dict(
        session.execute(
            select(QuizItem.position, QuizItem.question_version_id).where(QuizItem.quiz_id == quiz_id)
        ).all()
    )


def item_labels(session: Session, tenant_id: str) -> dict[tuple[int, int], dict]:
    """Per (question id, version) of the tenant: external ref, topic name and current a, b, c, D,
    model and thresholds (a GRM/GPCM item's ``[b1, ..]``, else None)."""
    rows = session.execute(
        select(
            QuestionVersion.question_id,
            QuestionVersion.version,
            Question.external_ref,
            Topic.name,
            ItemCalibration.a,
            ItemCalibration.b,
            ItemCalibration.c,
            ItemCalibration.D,
            ItemCalibration.model,
            ItemCalibration.thresholds,
        )
        .join(Question, Question.id == QuestionVersion.question_id)
        .outerjoin(Topic, Topic.id == QuestionVersion.topic_id)
        .outerjoin(
            ItemCalibration,
            and_(ItemCalibration.question_version_id == QuestionVersion.id, ItemCalibration.is_current),
        )
        .where(Question.tenant_id == tenant_id)
    ).all()
    return {
        (int(q), int(v)): {
            "ref": ref,
            "topic": topic,
            "a": a,
            "b": b,
            "c": c,
            "D": d,
            "model": model,
            "thresholds": thresholds,
        }
        for q, v, ref, topic, a, b, c, d, model, thresholds in rows
    }
