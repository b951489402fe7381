"""Database outages (issue 15, item 5): PostgreSQL stopped or frozen and SQLite's write lock held
by another process give 503 with Retry-After quickly, ``/health`` says the database is down, and
the service recovers by itself: the quiz resumes at the same pending item."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import pytest
from exposure_support import SECRET, service_settings
from fastapi.testclient import TestClient
from own_postgres import OwnPostgres

from service.core.security import create_token
from service.db import make_engine, make_session_factory, migrate
from service.demo import load_demo
from service.main import create_app

TENANT = "00000000-0000-0000-0000-000000000001"
HEADERS = {
    "Authorization": "Bearer " + create_token("ada", ["student"], TENANT, secret=SECRET, ttl_minutes=30)
}


def _loaded(url: str) -> None:
    migrate(url)
    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        load_demo(session, TENANT)
    engine.dispose()


def _timed(call):
    started = time.perf_counter()
    response = call()
    return response, time.perf_counter() - started


def _unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1


@pytest.fixture
def own_postgres():
    server = OwnPostgres(tempfile.mkdtemp(prefix="qbank-pg-")).init()
    server.start()
    yield server
    server.close()


@pytest.mark.postgres
def test_postgres_stopped_and_frozen(own_postgres):
    _loaded(own_postgres.url)
    settings = service_settings(own_postgres.url, request_timeout_s=2, db_connect_timeout_s=2)
    with TestClient(create_app(settings)) as client:
        quiz = client.post("/v1/quizzes", json={"filters": {"num_questions": 10}}, headers=HEADERS).json()
        pending = client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS).json()

        own_postgres.stop()
        r, seconds = _timed(lambda: client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS))
        _unavailable(r)
        assert seconds < 1.0, seconds
        r, seconds = _timed(lambda: client.get("/health"))
        _unavailable(r)
        assert r.json() == {"status": "unavailable", "database": "postgresql"} and seconds < 1.0

        own_postgres.start()
        assert client.get("/health").json()["status"] == "ok"
        again = client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS).json()
        assert again["question_id"] == pending["question_id"]  # resumes at the same pending item

        own_postgres.freeze()  # the server answers nothing; no statement timeout can fire
        try:
            r, seconds = _timed(lambda: client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS))
            _unavailable(r)
            assert seconds < 4.0, seconds
        finally:
            own_postgres.thaw()
        deadline = time.monotonic() + 20
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        r = client.post(
            f"/v1/quizzes/{quiz['quiz_id']}/answers",
            json={"question_id": pending["question_id"], "selected": "A"},
            headers=HEADERS,
        )
        assert r.status_code == 200, r.text


_HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
"""


def test_sqlite_write_lock_held_by_another_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'qbank.db'}"
    _loaded(url)
    settings = service_settings(url, db_statement_timeout_s=1)
    with TestClient(create_app(settings)) as client:
        quiz = client.post("/v1/quizzes", json={"filters": {"num_questions": 10}}, headers=HEADERS).json()
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(tmp_path / "qbank.db"), "4"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout.readline().strip() == "locked"
            r, seconds = _timed(lambda: client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS))
            _unavailable(r)  # before: a 60 s hang, then 500
            assert seconds < 3.0, seconds
        finally:
            holder.wait(timeout=30)
        r = client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=HEADERS)
        assert r.status_code == 200, r.text
