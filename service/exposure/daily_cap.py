"""The daily exposure cap: one conditional UPSERT per served item counts administrations per
question version and UTC day, so concurrent requests on any number of instances never serve an
item more than ``cap`` times a day."""

from __future__ import annotations

from datetime import date

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service.db import dialect_insert
from service.exposure_models import ItemDailyExposure
from service.models import (
    utcnow,
)

# ---------------------------------------------------------------------------- daily cap
_COUNTS = ItemDailyExposure.__table__
_CLAIMS: dict = {}  # dialect name -> the claim's UPSERT, built once (its compiled form is cached)


def _claim_statement(session: Session):
    dialect = session.get_bind().dialect.name
    statement = _CLAIMS.get(dialect)
    if statement is None:
        statement = (
            dialect_insert(session)(_COUNTS)
            .values(
                question_id=bindparam("question_id"),
                version=bindparam("version"),
                day=bindparam("day"),
                tenant_id=bindparam("tenant_id"),
                administrations=1,
            )
            .on_conflict_do_update(
                index_elements=["question_id", "version", "day"],
                set_={"administrations": _COUNTS.c.administrations + 1},
                where=_COUNTS.c.administrations < bindparam("cap"),
            )
            .returning(_COUNTS.c.administrations)
        )
        _CLAIMS[dialect] = statement
    return statement


def claim_daily_exposure(
    session: Session, tenant_id: str, question_id: int, version: int, cap: int, day: date | None = None
) -> bool:
    """Count one administration of the item on ``day`` (UTC today) unless ``cap`` were counted already.

    One statement, ``INSERT ... ON CONFLICT DO UPDATE SET administrations = administrations + 1
    WHERE administrations < cap RETURNING``: the row lock it takes makes concurrent claims
    apply one after the other, so the count never passes ``cap``. No commit: it is part of the
    serving transaction, and rolls back with it.

    PostgreSQL locks the conflicting row even when the WHERE fails, so a serving transaction
    trying capped items in its own ranking order would hold locks in an order no other shares:
    two quizzes deadlock. The claim therefore runs in a savepoint that a failed claim rolls
    back, releasing its lock; a transaction then holds at most one counter lock, taken last.
    """
    day = day or utcnow().date()
    connection = session.connection()
    savepoint = connection.dialect.name == "postgresql"  # SQLite has no row locks to release
    if savepoint:
        connection.exec_driver_sql("SAVEPOINT daily_claim")
    parameters = {
        "question_id": question_id,
        "version": version,
        "day": day,
        "tenant_id": tenant_id,
        "cap": cap,
    }
    claimed = connection.execute(_claim_statement(session), parameters).first() is not None
    if savepoint and not claimed:
        connection.exec_driver_sql("ROLLBACK TO SAVEPOINT daily_claim")
    return claimed


def capped_today(session: Session, tenant_id: str, cap: int, day: date | None = None) -> set[tuple[int, int]]:
    """The (question_id, version) pairs already served ``cap`` times on ``day`` (UTC today), read
    without locks: the withdrawal loop skips them instead of claiming each in turn."""
    day = day or utcnow().date()
    rows = session.execute(
        select(ItemDailyExposure.question_id, ItemDailyExposure.version).where(
            ItemDailyExposure.tenant_id == tenant_id,
            ItemDailyExposure.day == day,
            ItemDailyExposure.administrations >= cap,
        )
    ).all()
    return {(int(q), int(v)) for q, v in rows}


def daily_exposures(session: Session, tenant_id: str, day: date | None = None) -> dict:
    """Administrations per (question_id, version) counted on ``day`` (UTC today)."""
    day = day or utcnow().date()
    rows = session.execute(
        select(
            ItemDailyExposure.question_id, ItemDailyExposure.version, ItemDailyExposure.administrations
        ).where(ItemDailyExposure.tenant_id == tenant_id, ItemDailyExposure.day == day)
    ).all()
    session.commit()
    return {(int(q), int(v)): int(n) for q, v, n in rows}
