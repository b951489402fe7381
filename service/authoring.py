"""Authoring and publishing: questions are versioned, versions are immutable once written.

Creating a question writes version 1 as a draft; editing writes the next version as a draft;
publishing makes a version live for an exam (the previous live version for that exam is
retired unless another exam still serves it). Served items therefore never change under a
running quiz, and caches keyed by version id are always valid.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.db import commit_or_conflict
from service.errors import Conflict, NotFound
from service.events import audit
from service.models import (
    ItemCalibration,
    Question,
    QuestionOption,
    QuestionPublication,
    QuestionVersion,
    Topic,
)
from service.schemas import QuestionContent


def topic_for(session: Session, tenant_id: str, name: str) -> Topic:
    """The tenant's topic called ``name``, created on first use."""
    topic = session.scalar(select(Topic).where(Topic.tenant_id == tenant_id, Topic.name == name))
    if topic is None:
        topic = Topic(tenant_id=tenant_id, parent_id=None, name=name, blueprint_code=None)
        session.add(topic)
        session.flush()
    return topic


def _question(session: Session, tenant_id: str, question_id: int) -> Question:
    question = session.scalar(
        select(Question).where(
            Question.id == question_id, Question.tenant_id == tenant_id, Question.is_deleted.is_(False)
        )
    )
    if question is None:
        raise NotFound(f"question {question_id} not found")
    return question


def _write_version(
    session: Session, question: Question, version: int, content: QuestionContent, topic: Topic, actor: str
) -> QuestionVersion:
    row = QuestionVersion(
        question_id=question.id,
        version=version,
        state="draft",
        stem_md=content.stem_md,
        lead_in=content.lead_in,
        rationale_md=content.rationale_md,
        difficulty_label=content.difficulty_label,
        bloom_level=content.bloom_level,
        topic_id=topic.id,
        tags=content.tags,
        assets=[],
        references=[],
        created_by=actor,
    )
    session.add(row)
    session.flush()
    session.add_all(
        QuestionOption(
            question_version_id=row.id,
            option_label=o.label,
            option_text_md=o.text_md,
            is_correct=o.is_correct,
            score=o.score,
        )
        for o in content.options
    )
    return row


def create_question(
    session: Session, tenant_id: str, actor: str, content: QuestionContent
) -> QuestionVersion:
    """Write a new question with its first (draft) version; commits."""
    if content.external_ref is not None:
        clash = session.scalar(
            select(Question.id).where(
                Question.tenant_id == tenant_id, Question.external_ref == content.external_ref
            )
        )
        if clash is not None:
            raise Conflict(f"external_ref {content.external_ref!r} is already question {clash}")
    topic = topic_for(session, tenant_id, content.topic_name)
    question = Question(
        tenant_id=tenant_id, external_ref=content.external_ref, created_by=actor, is_deleted=False
    )
    session.add(question)
    session.flush()
    row = _write_version(session, question, 1, content, topic, actor)
    audit(session, tenant_id, actor, "question.create", "question", question.id, {"version": 1})
    commit_or_conflict(session, f"external_ref {content.external_ref!r} was just taken by another question")
    return row


def edit_question(
    session: Session, tenant_id: str, actor: str, question_id: int, content: QuestionContent
) -> QuestionVersion:
    """Write the next version of a question as a draft (the live version stays live); commits."""
    question = _question(session, tenant_id, question_id)
    if content.external_ref is not None and content.external_ref != question.external_ref:
        raise Conflict(
            f"external_ref of question {question_id} is {question.external_ref!r}; it cannot change"
        )
    latest = session.scalar(
        select(func.max(QuestionVersion.version)).where(QuestionVersion.question_id == question_id)
    )
    topic = topic_for(session, tenant_id, content.topic_name)
    row = _write_version(session, question, int(latest or 0) + 1, content, topic, actor)
    audit(session, tenant_id, actor, "question.edit", "question", question_id, {"version": row.version})
    commit_or_conflict(session, f"question {question_id} was edited concurrently; retry")
    return row


def publish(
    session: Session, tenant_id: str, actor: str, question_id: int, exam_code: str, version: int | None = None
) -> QuestionVersion:
    """Make ``version`` (default: the newest) live for ``exam_code``; commits."""
    _question(session, tenant_id, question_id)
    query = select(QuestionVersion).where(QuestionVersion.question_id == question_id)
    if version is None:
        row = session.scalar(query.order_by(QuestionVersion.version.desc()).limit(1))
    else:
        row = session.scalar(query.where(QuestionVersion.version == version))
    if row is None:
        raise NotFound(f"question {question_id} has no version {version}")
    publication = session.scalar(
        select(QuestionPublication)
        .where(
            QuestionPublication.tenant_id == tenant_id,
            QuestionPublication.question_id == question_id,
            QuestionPublication.exam_code == exam_code,
        )
        .with_for_update()
    )
    previous_version_id = None
    if publication is None:
        session.add(
            QuestionPublication(
                tenant_id=tenant_id,
                question_id=question_id,
                exam_code=exam_code,
                live_version=row.version,
                question_version_id=row.id,
                published_by=actor,
            )
        )
    else:
        previous_version_id = publication.question_version_id
        publication.live_version = row.version
        publication.question_version_id = row.id
        publication.published_by = actor
    row.state = "published"
    session.flush()
    if previous_version_id is not None and previous_version_id != row.id:
        still_live = session.scalar(
            select(func.count())
            .select_from(QuestionPublication)
            .where(QuestionPublication.question_version_id == previous_version_id)
        )
        if not still_live:
            old = session.get(QuestionVersion, previous_version_id)
            old.state = "retired"
    audit(
        session,
        tenant_id,
        actor,
        "question.publish",
        "question",
        question_id,
        {"version": row.version, "exam_code": exam_code},
    )
    session.commit()
    return row


def question_detail(session: Session, tenant_id: str, question_id: int) -> dict:
    """Every version with options, keys and current calibration (for authors, not students)."""
    question = _question(session, tenant_id, question_id)
    versions = session.scalars(
        select(QuestionVersion)
        .where(QuestionVersion.question_id == question_id)
        .order_by(QuestionVersion.version)
    ).all()
    ids = [v.id for v in versions]
    options = session.scalars(
        select(QuestionOption)
        .where(QuestionOption.question_version_id.in_(ids))
        .order_by(QuestionOption.option_label)
    ).all()
    topics = {
        t.id: t.name
        for t in session.scalars(
            select(Topic).where(Topic.id.in_({v.topic_id for v in versions if v.topic_id is not None}))
        )
    }
    calibrations = {
        c.question_version_id: c
        for c in session.scalars(
            select(ItemCalibration).where(
                ItemCalibration.question_version_id.in_(ids), ItemCalibration.is_current
            )
        )
    }
    publications = session.scalars(
        select(QuestionPublication).where(
            QuestionPublication.question_id == question_id, QuestionPublication.tenant_id == tenant_id
        )
    ).all()
    out_versions = []
    for v in versions:
        cal = calibrations.get(v.id)
        out_versions.append(
            {
                "version": v.version,
                "state": v.state,
                "stem_md": v.stem_md,
                "lead_in": v.lead_in,
                "rationale_md": v.rationale_md,
                "difficulty_label": v.difficulty_label,
                "topic_name": topics.get(v.topic_id),
                "options": [
                    {
                        "label": o.option_label,
                        "text_md": o.option_text_md,
                        "is_correct": o.is_correct,
                        "score": o.score,
                    }
                    for o in options
                    if o.question_version_id == v.id
                ],
                "calibration": None
                if cal is None
                else {
                    "calibration_id": cal.id,
                    "model": cal.model,
                    "a": cal.a,
                    "b": cal.b,
                    "c": cal.c,
                    "D": cal.D,
                    "thresholds": cal.thresholds,
                    "source": cal.source,
                },
            }
        )
    session.commit()  # ends the read transaction
    return {
        "question_id": question.id,
        "external_ref": question.external_ref,
        "versions": out_versions,
        "publications": {p.exam_code: p.live_version for p in publications},
    }
