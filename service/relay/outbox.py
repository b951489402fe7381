"""The relay's side of the outbox table: claim a batch in order, mark what the broker
acknowledged, prune what was sent long ago, report the lag, and the single-relay lease.

PostgreSQL: several relays may run at once. Each claims its batch with ``SELECT ... FOR UPDATE
SKIP LOCKED`` inside a transaction that lasts until the batch is marked, so no two relays hold
the same event, and an event a crashed relay held is free again when its connection dies.
Since relays publish concurrently, a relay leaves out every quiz (aggregate) that still has an
earlier unsent event outside its batch: another relay holds it and must ship it first.

SQLite: one writer at a time, so one relay at a time, enforced by the lease row; the relay reads
its batch, publishes outside any transaction (the service keeps writing) and marks afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select, update

from service.models import OutboxEvent, OutboxRelayLease, utcnow
from service.relay.envelope import OutboxMessage

LEASE_NAME = "outbox"

_COLUMNS = (
    OutboxEvent.id,
    OutboxEvent.event_id,
    OutboxEvent.tenant_id,
    OutboxEvent.event_type,
    OutboxEvent.aggregate_type,
    OutboxEvent.aggregate_id,
    OutboxEvent.payload,
    OutboxEvent.created_at,
)


@dataclass(frozen=True)
class OutboxLag:
    """How far the relay is behind: unsent events and the age of the oldest one (None: none)."""

    backlog: int
    oldest_unsent_age_s: float | None
    oldest_unsent_at: datetime | None

    def as_dict(self) -> dict:
        return {
            "backlog": self.backlog,
            "oldest_unsent_age_s": self.oldest_unsent_age_s,
            "oldest_unsent_at": self.oldest_unsent_at.isoformat() if self.oldest_unsent_at else None,
        }


def _unsent():
    return select(*_COLUMNS).where(OutboxEvent.published_at.is_(None)).order_by(OutboxEvent.id)


def _messages(rows) -> list[OutboxMessage]:
    return [OutboxMessage(*row) for row in rows]


def read_batch(connection: Connection, batch_size: int) -> list[OutboxMessage]:
    """The oldest unsent events, in order, without locking (the SQLite relay, under its lease)."""
    return _messages(connection.execute(_unsent().limit(batch_size)))


def claim_batch(connection: Connection, batch_size: int) -> list[OutboxMessage]:
    """Lock the oldest unsent events no other relay holds (PostgreSQL, inside the caller's
    transaction), less the quizzes whose earlier events another relay still holds."""
    claimed = _messages(connection.execute(_unsent().limit(batch_size).with_for_update(skip_locked=True)))
    if not claimed:
        return claimed
    last_in_batch: dict[str, int] = {}
    for message in claimed:
        last_in_batch[message.aggregate_id] = message.id
    ids = [m.id for m in claimed]
    earliest_elsewhere = connection.execute(
        select(OutboxEvent.aggregate_id, func.min(OutboxEvent.id))
        .where(
            OutboxEvent.published_at.is_(None),
            OutboxEvent.aggregate_id.in_(list(last_in_batch)),
            OutboxEvent.id.not_in(ids),
        )
        .group_by(OutboxEvent.aggregate_id)
    ).all()
    blocked = {aggregate for aggregate, first in earliest_elsewhere if first < last_in_batch[aggregate]}
    return [m for m in claimed if m.aggregate_id not in blocked]


def mark_sent(connection: Connection, ids: list[int], when: datetime | None = None) -> int:
    """Set ``published_at`` on the given events that are still unsent; returns how many."""
    if not ids:
        return 0
    result = connection.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(ids), OutboxEvent.published_at.is_(None))
        .values(published_at=when or utcnow())
    )
    return result.rowcount


def prune_sent(connection: Connection, retention: timedelta) -> int:
    """Delete events sent more than ``retention`` ago; returns how many."""
    cutoff = utcnow() - retention
    result = connection.execute(
        delete(OutboxEvent).where(OutboxEvent.published_at.is_not(None), OutboxEvent.published_at < cutoff)
    )
    return result.rowcount


def outbox_lag(connection: Connection, now: datetime | None = None) -> OutboxLag:
    """Backlog size and age of the oldest unsent event (both read through ix_outbox_unpublished)."""
    backlog, oldest = connection.execute(
        select(func.count(), func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))
    ).one()
    if oldest is None:
        return OutboxLag(int(backlog), None, None)
    if oldest.tzinfo is None:  # an aggregate over a SQLite column comes back naive (UTC)
        from datetime import UTC

        oldest = oldest.replace(tzinfo=UTC)
    age = ((now or utcnow()) - oldest).total_seconds()
    return OutboxLag(int(backlog), max(age, 0.0), oldest)


def acquire_lease(
    connection: Connection, holder: str, ttl: timedelta, holder_is_gone=lambda _holder: False
) -> str | None:
    """Take or renew the single-relay lease for ``ttl``; returns None on success, else the
    current holder (whose lease has not expired and who is not known to be gone:
    ``holder_is_gone(holder)``)."""
    now = utcnow()
    lease = connection.execute(
        select(OutboxRelayLease.holder, OutboxRelayLease.expires_at).where(
            OutboxRelayLease.name == LEASE_NAME
        )
    ).first()
    if lease is None:
        connection.execute(
            OutboxRelayLease.__table__.insert().values(
                name=LEASE_NAME, holder=holder, acquired_at=now, expires_at=now + ttl
            )
        )
        return None
    if lease.holder != holder and lease.expires_at > now and not holder_is_gone(lease.holder):
        return lease.holder
    values = {"holder": holder, "expires_at": now + ttl}
    if lease.holder != holder:
        values["acquired_at"] = now
    connection.execute(update(OutboxRelayLease).where(OutboxRelayLease.name == LEASE_NAME).values(**values))
    return None


def release_lease(connection: Connection, holder: str) -> None:
    connection.execute(
        delete(OutboxRelayLease).where(OutboxRelayLease.name == LEASE_NAME, OutboxRelayLease.holder == holder)
    )
