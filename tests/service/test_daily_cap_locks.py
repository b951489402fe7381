"""The daily exposure cap under concurrency (PostgreSQL row locks).

Two quizzes try capped items in opposite orders, as the withdrawal loop of ``next_item`` does
when their rankings differ. A failed claim must leave no row lock behind, else quiz A holds X
and waits for Y while quiz B holds Y and waits for X: a deadlock (issue 15, item 1).
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from service.exposure import claim_daily_exposure
from service.models import Question

TENANT = "00000000-0000-0000-0000-000000000001"


@pytest.fixture
def pg_only(db):
    if not db.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL only (SQLite runs one writer at a time)")
    return db


def test_failed_claims_hold_no_lock(pg_only, loaded_bank, session_factory):
    with session_factory() as session:
        x, y = session.scalars(select(Question.id).order_by(Question.id).limit(2)).all()
        # Both items reach the cap of 1 today.
        assert claim_daily_exposure(session, TENANT, x, 1, cap=1)
        assert claim_daily_exposure(session, TENANT, y, 1, cap=1)
        session.commit()
    a, b = session_factory(), session_factory()
    try:
        assert not claim_daily_exposure(a, TENANT, x, 1, cap=1)  # A: X is capped
        assert not claim_daily_exposure(b, TENANT, y, 1, cap=1)  # B: Y is capped
        outcome: dict = {}

        def a_tries_y():
            try:
                outcome["a"] = claim_daily_exposure(a, TENANT, y, 1, cap=1)
            except Exception as exc:
                outcome["a"] = exc

        worker = threading.Thread(target=a_tries_y)
        worker.start()
        worker.join(timeout=3)
        # Before the fix A waited here for B's lock on Y, and B's claim of X below deadlocked.
        assert not worker.is_alive(), "a failed claim left a row lock: A waits for B"
        assert outcome["a"] is False
        assert not claim_daily_exposure(b, TENANT, x, 1, cap=1)
        a.commit()
        b.commit()
    finally:
        b.rollback()
        a.rollback()
        worker.join(timeout=30)
        a.close()
        b.close()


def test_claims_never_pass_the_cap(pg_only, loaded_bank, session_factory):
    with session_factory() as session:
        x = session.scalars(select(Question.id).order_by(Question.id).limit(1)).one()
    results: list[bool] = []
    lock = threading.Lock()

    def claim():
        with session_factory() as session:
            ok = claim_daily_exposure(session, TENANT, x, 1, cap=3)
            session.commit()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False] * 5 + [True] * 3
