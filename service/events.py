"""Outbox events and audit entries, written in the caller's transaction so they commit (or roll
back) together with the change they describe."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service.models import AuditLog, OutboxEvent
from service.relay.envelope import ENVELOPE_KEYS

_INSERT_EVENT = insert(OutboxEvent.__table__)  # built once: its compiled form is cached
EVENT_TYPES = ("quiz_started", "question_served", "answer_submitted", "quiz_finished", "bundle_promoted")


def emit(
    session: Session, tenant_id: str, event_type: str, aggregate_type: str, aggregate_id, payload: dict
) -> None:
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    shadowed = sorted(set(payload) & set(ENVELOPE_KEYS))
    if shadowed:  # the relay's envelope spreads the payload beside these keys
        raise ValueError(f"{event_type} payload must not carry the envelope's keys {shadowed}")
    # An INSERT now, not an ORM object flushed at commit: events take their ids (the relay's
    # order) in the order they are emitted, and the student's hot path pays no unit of work.
    session.connection().execute(
        _INSERT_EVENT,
        {
            "event_id": str(uuid.uuid4()),
            "tenant_id": tenant_id,
            "event_type": event_type,
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "payload": payload,
        },
    )


def audit(
    session: Session, tenant_id: str, actor: str, action: str, entity_type: str, entity_id, details=None
) -> None:
    session.add(
        AuditLog(
            tenant_id=tenant_id,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            details=details or {},
        )
    )
