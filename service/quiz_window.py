"""The one definition of the quizzes that exposure figures count (the exposure table, the A/B
report of the flags page and the drift report): the quizzes of the tenant (and exam) started
in the last ``days`` days that were served at least one question. Each report may narrow it to
its own population (adaptive quizzes; quizzes that pinned the active bundle), never widen it."""

from __future__ import annotations

from datetime import timedelta

from service.models import QuizSession, utcnow

DEFINITION = "quizzes started in the last {days} days that were served at least one question"


def window_clauses(tenant_id: str, days: int, exam_code: str | None = None) -> list:
    """``WHERE`` clauses on :class:`QuizSession` selecting the window's quizzes."""
    clauses = [
        QuizSession.tenant_id == tenant_id,
        QuizSession.created_at > utcnow() - timedelta(days=days),
        QuizSession.n_served > 0,
    ]
    if exam_code:
        clauses.append(QuizSession.exam_code == exam_code)
    return clauses
