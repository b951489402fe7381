"""The service under load against a real server (2 uvicorn workers) on SQLite and PostgreSQL:
duplicate and conflicting answers under a low daily exposure cap, and kill -9 of every server
process a third of the way through, then a restart: 0 lost answers, 0 deadlocks, 0 5xx, every
quiz resumed and finished, the cap held. Small and bounded here; 200 students in
benchmarks/bench_reliability.py."""

from __future__ import annotations

import asyncio

from live_load import Server, Stats, load_bank, lost_answers, run_students
from sqlalchemy import func, select

from service.db import make_engine
from service.models import QuizItem

STUDENTS, LENGTH, CAP = 12, 8, 2


def _most_served(url: str) -> int:
    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        counts = connection.execute(select(func.count()).select_from(QuizItem).group_by(QuizItem.question_id))
        most = max(n for (n,) in counts)
    engine.dispose()
    return most


def test_duplicates_conflicts_low_cap_and_kill9(db, tmp_path):
    labels = load_bank(db)
    server = Server(db, workers=2, log=tmp_path / "server.log", QBANK_MAX_DAILY_EXPOSURES=CAP)
    server.start()
    stats = Stats()

    async def kill_and_restart():
        while stats.answers < STUDENTS * LENGTH // 3:
            await asyncio.sleep(0.05)
        answered_before = stats.answers
        server.kill9()  # master and workers, with requests in flight
        await asyncio.to_thread(server.start)
        stats.killed_at = answered_before

    try:
        asyncio.run(run_students(server.port, STUDENTS, LENGTH, labels, 15, stats, during=kill_and_restart))
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    print(
        f"{stats.answers} answers ({stats.duplicates} sent twice, {stats.conflicts} with a conflicting twin), "
        f"kill -9 after {stats.killed_at}, {stats.retries} retries across the restart, "
        f"{len(stats.server_errors)} 5xx"
    )
    assert stats.server_errors == []
    assert "deadlock" not in log.lower() and "Traceback" not in log
    assert stats.retries > 0  # the kill hit requests in flight
    assert stats.finished == STUDENTS and stats.answers == STUDENTS * LENGTH
    assert stats.duplicates > 0 and stats.conflicts > 0
    assert lost_answers(db, stats) == []
    assert _most_served(db) <= CAP
