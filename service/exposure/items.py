"""The exam's live items with the K in force (the active bundle revision's), the K a pending
revision would bring, and each item's exposure in a recent window (the scaffold's
``GET /v1/admin/exposure/items``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from service.exposure.rules import active_bundle
from service.models import (
    Question,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    UserResponse,
    utcnow,
)
from service.quiz_window import window_clauses


# ---------------------------------------------------------------------------- parameters in force
def _window_exposure(
    session: Session, tenant_id: str, days: int, exam_code: str | None = None
) -> tuple[int, dict]:
    """The window's quizzes (:mod:`service.quiz_window`) and, per (question_id, version), how many
    of them administered it."""
    window = window_clauses(tenant_id, days, exam_code)
    n_quizzes = session.scalar(select(func.count()).select_from(QuizSession).where(*window))
    counts = session.execute(
        select(QuizItem.question_id, QuizItem.version, func.count(distinct(QuizItem.quiz_id)))
        .join(QuizSession, QuizSession.id == QuizItem.quiz_id)
        .where(*window)
        .group_by(QuizItem.question_id, QuizItem.version)
    ).all()
    return int(n_quizzes or 0), {(int(q), int(v)): int(n) for q, v, n in counts}


def exposure_items(session: Session, tenant_id: str, limit: int, days: int = 7) -> list[dict]:
    """Live item versions with the K in force (the active bundle revision's) and their recent exposure.

    Returns
    -------
    list of dict
        Most attempted first: ``question_id, version, topic_id, sh_p`` (classic K of the active
        bundle, 1.0 without one; the first stratum's for a conditional bundle), ``sh_p_strata``
        (per-stratum K of a conditional active bundle, or null), ``bundle_sh_p`` (the active
        bundle's K: a number, a list per stratum, or null when no active bundle holds the item),
        ``pending_sh_p`` and ``overridden`` (K in the exam's newest revision awaiting validation
        or promotion, and whether it differs from the active one), ``recent_attempts`` (answers
        in the window), ``quizzes_administered`` and ``exposure_rate`` (share of the window's
        quizzes that administered the item; null without quizzes), ``window_quizzes``.
    """
    from service.exposure.revisions import parent_revision

    cutoff = utcnow() - timedelta(days=days)
    attempts = (
        select(UserResponse.question_version_id, func.count().label("n"))
        .where(UserResponse.tenant_id == tenant_id, UserResponse.created_at > cutoff)
        .group_by(UserResponse.question_version_id)
        .subquery()
    )
    rows = session.execute(
        select(
            QuestionVersion.question_id,
            QuestionVersion.version,
            QuestionVersion.topic_id,
            Question.external_ref,
            QuestionPublication.exam_code,
            func.coalesce(attempts.c.n, 0).label("recent"),
        )
        .join(Question, Question.id == QuestionVersion.question_id)
        .join(QuestionPublication, QuestionPublication.question_version_id == QuestionVersion.id)
        .where(QuestionPublication.tenant_id == tenant_id)
        .outerjoin(attempts, attempts.c.question_version_id == QuestionVersion.id)
        .order_by(func.coalesce(attempts.c.n, 0).desc(), QuestionVersion.question_id)
        .limit(limit)
    ).all()
    active_k, pending_k = {}, {}
    for exam_code in sorted({r.exam_code for r in rows}):
        bundle = active_bundle(session, tenant_id, exam_code)
        if bundle is not None:
            active_k[exam_code] = {item["item_id"]: item["sh_p"] for item in bundle.document["items"]}
        pending = parent_revision(session, tenant_id, exam_code)
        if pending is not None and pending is not bundle:
            pending_k[exam_code] = {item["item_id"]: item["sh_p"] for item in pending.document["items"]}
    n_quizzes, administered = _window_exposure(session, tenant_id, days)
    session.commit()  # ends the read transaction
    out = []
    for qid, version, topic_id, ref, exam_code, recent in rows:
        ref = ref if ref else f"question:{qid}"
        from_bundle = active_k.get(exam_code, {}).get(ref)
        pending = pending_k.get(exam_code, {}).get(ref)
        in_force = 1.0 if from_bundle is None else from_bundle
        n_administered = administered.get((int(qid), int(version)), 0)
        out.append(
            {
                "question_id": qid,
                "version": version,
                "topic_id": topic_id,
                "sh_p": float(in_force[0] if isinstance(in_force, list) else in_force),
                "sh_p_strata": in_force if isinstance(in_force, list) else None,
                "bundle_sh_p": from_bundle,
                "pending_sh_p": pending,
                "overridden": pending is not None and pending != in_force,
                "recent_attempts": int(recent),
                "quizzes_administered": n_administered,
                "exposure_rate": n_administered / n_quizzes if n_quizzes else None,
                "window_quizzes": n_quizzes,
            }
        )
    return out
