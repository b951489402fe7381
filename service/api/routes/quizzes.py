"""Quizzes for students: start, next item, answer, summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from service import quizzes
from service.api.deps import CurrentUser, SessionDep, SettingsDep, StudentUser
from service.schemas import AnswerResult, AnswerSubmit, NextQuestion, QuizCreate, QuizCreated, QuizSummary

router = APIRouter(prefix="/quizzes", tags=["quizzes"])
QuizId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post("", response_model=QuizCreated, status_code=status.HTTP_201_CREATED)
def create_quiz(
    body: QuizCreate, user: StudentUser, session: SessionDep, settings: SettingsDep
) -> QuizCreated:
    quiz, planned = quizzes.start_quiz(session, settings, user, body)
    return QuizCreated(
        quiz_id=quiz.id,
        question_ids=planned,
        expires_at=quiz.expires_at,
        mode=quiz.mode,
        adaptive=quiz.adaptive,
        selector=quiz.selector["rule"],
        max_questions=quiz.stopping.get("length", quiz.stopping.get("max_length")),
    )


@router.get("/{quiz_id}/next", response_model=NextQuestion)
def next_question(quiz_id: QuizId, user: StudentUser, session: SessionDep) -> dict:
    """The pending item (the same one until it is answered); no key, no rationale."""
    return quizzes.next_item(session, user, quiz_id)


@router.post("/{quiz_id}/answers", response_model=AnswerResult)
def submit_answer(
    quiz_id: QuizId,
    body: AnswerSubmit,
    user: StudentUser,
    session: SessionDep,
    with_next: Annotated[
        bool,
        Query(
            alias="next",
            description="also serve the next item in this response (``next_item``), as GET .../next "
            "would: one round trip per question instead of two",
        ),
    ] = False,
) -> dict:
    """Answer the pending item; replaying the same answer returns the stored result. The answer
    is committed before the next item is chosen: if choosing fails, replaying the same request
    returns the stored result and tries again."""
    result = quizzes.submit_answer(session, user, quiz_id, body)
    if with_next and not result["quiz_finished"]:
        result["next_item"] = quizzes.next_item(session, user, quiz_id)
    return result


@router.get("/{quiz_id}", response_model=QuizSummary)
def get_quiz(quiz_id: QuizId, user: CurrentUser, session: SessionDep) -> dict:
    """Progress; theta, SE and per-topic results once finished (owner, or an admin of the tenant)."""
    return quizzes.summary(session, user, quiz_id)
