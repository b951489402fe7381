"""What the relay sends for one outbox event: the seed's JSON envelope (``event_id``,
``event_type``, ``timestamp`` plus the payload's own keys), where it goes, and its key.

``timestamp`` is when the change happened (the outbox row's ``created_at``, ISO 8601 UTC),
not when it was shipped. ``tenant_id``, ``aggregate_type`` and ``aggregate_id`` come along so
a consumer needs no database. ``event_id`` is unique per event: a consumer drops a message
whose id it has already seen (delivery is at least once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

ENVELOPE_KEYS = ("event_id", "event_type", "timestamp", "tenant_id", "aggregate_type", "aggregate_id")
TOPIC = "events.qbank"  # the seed's Kafka topic; NATS subjects are TOPIC + "." + event_type


@dataclass(frozen=True)
class OutboxMessage:
    """One row of ``outbox_events`` on its way out; ``id`` orders the outbox."""

    id: int
    event_id: str
    tenant_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict
    created_at: datetime

    @property
    def ordering_key(self) -> str:
        """Events with the same key must arrive in outbox order: the quiz id for quiz events
        (the Kafka partition key), the bundle id for ``bundle_promoted``."""
        return self.aggregate_id


def envelope(message: OutboxMessage) -> dict:
    """The JSON object a consumer receives (payload keys never shadow the envelope's: ``emit``
    refuses such a payload)."""
    return {
        "event_id": message.event_id,
        "event_type": message.event_type,
        "timestamp": message.created_at.isoformat(timespec="microseconds"),
        "tenant_id": message.tenant_id,
        "aggregate_type": message.aggregate_type,
        "aggregate_id": message.aggregate_id,
        **message.payload,
    }


def encode(message: OutboxMessage) -> bytes:
    return json.dumps(envelope(message), separators=(",", ":"), sort_keys=True).encode("utf-8")


def subject(message: OutboxMessage, prefix: str = TOPIC) -> str:
    return f"{prefix}.{message.event_type}"
