"""Authoring (authors) and publishing (publishers); every call is scoped to the token's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from service import authoring
from service.api.deps import AuthorUser, ContentReader, PublisherUser, SessionDep
from service.schemas import INT64_MAX, PublishOut, QuestionContent, QuestionCreate, QuestionOut, QuestionSaved

router = APIRouter(prefix="/author", tags=["authoring"])
QuestionId = Annotated[int, Path(ge=1, le=INT64_MAX)]


def _saved(row) -> QuestionSaved:
    return QuestionSaved(
        question_id=row.question_id, version=row.version, topic_id=row.topic_id, state=row.state
    )


@router.post("/questions", response_model=QuestionSaved)
def create_question(body: QuestionCreate, user: AuthorUser, session: SessionDep) -> QuestionSaved:
    """Create a question; its version 1 is a draft until published."""
    return _saved(authoring.create_question(session, user.tenant, user.sub, body))


@router.put("/questions/{question_id}", response_model=QuestionSaved)
def edit_question(
    question_id: QuestionId, body: QuestionContent, user: AuthorUser, session: SessionDep
) -> QuestionSaved:
    """Edit a question: writes the next version as a draft; the live version stays live."""
    return _saved(authoring.edit_question(session, user.tenant, user.sub, question_id, body))


@router.get("/questions/{question_id}", response_model=QuestionOut)
def get_question(question_id: QuestionId, user: ContentReader, session: SessionDep) -> dict:
    return authoring.question_detail(session, user.tenant, question_id)


@router.post("/publish/{question_id}", response_model=PublishOut)
def publish(
    question_id: QuestionId,
    user: PublisherUser,
    session: SessionDep,
    exam_code: str = Query("DEMO-EXAM", min_length=1, max_length=64),
    version: int | None = Query(None, ge=1, le=2**31 - 1),
) -> PublishOut:
    """Make a version (default: the newest) live for an exam."""
    row = authoring.publish(session, user.tenant, user.sub, question_id, exam_code, version)
    return PublishOut(published=True, question_id=question_id, version=row.version, exam_code=exam_code)
