"""Fixtures for the delivery-service tests: every API test runs on SQLite and on a fresh
PostgreSQL database (``qbank_test_<random>`` on 127.0.0.1:5432, user postgres, dropped at the
end; the server is started with scripts/ensure-services.sh when it is down).

Each backend is migrated once per run; after every test all tables are emptied, so each
test starts from an empty schema. Tokens come from the real login endpoints.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.core.config import Settings
from service.core.security import create_token
from service.db import make_engine, make_session_factory, migrate
from service.main import create_app
from service.models import Base

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TENANT = "00000000-0000-0000-0000-000000000001"
OTHER_TENANT = "tenant-b-0000-0000"
SECRET = "test-secret-" + "x" * 40
ALL_ROLES = ["student", "author", "publisher", "admin"]


def _postgres_up() -> bool:
    import psycopg

    try:
        psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


def _create_pg_database() -> str:
    import psycopg

    if not _postgres_up():
        subprocess.run(["bash", str(ROOT / "scripts" / "ensure-services.sh")], check=False, timeout=120)
    if not _postgres_up():
        pytest.fail("PostgreSQL on 127.0.0.1:5432 is down and scripts/ensure-services.sh could not start it")
    name = f"qbank_test_{secrets.token_hex(6)}"
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_pg_url():
    """A PostgreSQL database of the test's own, empty (dropped afterwards)."""
    name = _create_pg_database()
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        _drop_pg_database(name)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path_factory):
    """A migrated, empty database of each backend, for the whole run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'qbank.db'}"
        migrate(url)
        yield url
        return
    name = _create_pg_database()
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        migrate(url)
        yield url
    finally:
        _drop_pg_database(name)


def _empty_all_tables(url: str) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as conn:
            tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


@pytest.fixture
def db(database_url):
    """The run's database, emptied after the test."""
    yield database_url
    _empty_all_tables(database_url)


def make_settings(url: str, env: str = "test", **overrides) -> Settings:
    return Settings(database_url=url, env=env, secret_key=SECRET, **overrides)


@pytest.fixture
def session_factory(db):
    engine = make_engine(db, pool_size=2)
    yield make_session_factory(engine)
    engine.dispose()


class Api:
    """A TestClient with helpers for tokens and requests as a given user."""

    default_tenant = TENANT

    def __init__(self, client: TestClient, session_factory, env: str):
        self.client = client
        self.session_factory = session_factory
        self.env = env
        self._tokens: dict = {}

    def token(self, user: str = "alice", roles=("student",), tenant: str = TENANT) -> str:
        """A token for ``user``: from mock login in dev, else signed with the app's secret (what
        ``/v1/auth/login`` returns; the login itself is tested in test_auth.py)."""
        key = (user, tuple(roles), tenant)
        if key not in self._tokens:
            if self.env == "dev":
                r = self.client.post(
                    "/v1/auth/mock-login", json={"user_id": user, "roles": list(roles), "tenant_id": tenant}
                )
                assert r.status_code == 200, r.text
                self._tokens[key] = r.json()["access_token"]
            else:
                self._tokens[key] = create_token(user, list(roles), tenant, secret=SECRET, ttl_minutes=30)
        return self._tokens[key]

    def headers(self, user: str = "alice", roles=("student",), tenant: str = TENANT) -> dict:
        return {"Authorization": f"Bearer {self.token(user, roles, tenant)}"}

    def get(self, path, user="alice", roles=("student",), tenant=TENANT, **kw):
        headers = {**self.headers(user, roles, tenant), **kw.pop("headers", {})}
        return self.client.get(path, headers=headers, **kw)

    def post(self, path, user="alice", roles=("student",), tenant=TENANT, **kw):
        headers = {**self.headers(user, roles, tenant), **kw.pop("headers", {})}
        return self.client.post(path, headers=headers, **kw)

    def put(self, path, user="alice", roles=("student",), tenant=TENANT, **kw):
        headers = {**self.headers(user, roles, tenant), **kw.pop("headers", {})}
        return self.client.put(path, headers=headers, **kw)


def _api(db, session_factory, env):
    app = create_app(make_settings(db, env=env))
    with TestClient(app) as client:
        yield Api(client, session_factory, env)


@pytest.fixture
def api(db, session_factory):
    """The app in ``test`` mode (no mock login)."""
    yield from _api(db, session_factory, "test")


@pytest.fixture
def dev_api(db, session_factory):
    """The app in ``dev`` mode (mock login), as ``make demo`` runs it."""
    yield from _api(db, session_factory, "dev")


# ------------------------------------------------------------------ the demo bank
@pytest.fixture(scope="session")
def demo_bank():
    return json.loads((ROOT / "data" / "demo_bank.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def demo_pool_frame():
    return pd.read_csv(ROOT / "data" / "demo_pool.csv", dtype={"item_id": str})


@pytest.fixture
def loaded_bank(db, session_factory, demo_bank, demo_pool_frame):
    """The demo bank loaded for TENANT; returns a helper that knows keys and parameters by question id."""
    from sqlalchemy import select

    from service.demo import load_demo
    from service.models import Question

    with session_factory() as session:
        assert load_demo(session, TENANT) == len(demo_bank["items"])
        refs = dict(session.execute(select(Question.id, Question.external_ref)).all())
    return BankKeys(refs, demo_bank, demo_pool_frame)


class BankKeys:
    """What a simulated student (or an auditor) knows: keys and 3PL parameters per question id."""

    def __init__(self, refs: dict, bank: dict, pool: pd.DataFrame):
        by_ref = {item["item_id"]: item for item in bank["items"]}
        params = pool.set_index("item_id")
        self.ref = refs
        self.key = {
            qid: next(o["label"] for o in by_ref[ref]["options"] if o["is_correct"])
            for qid, ref in refs.items()
        }
        self.wrong = {
            qid: next(o["label"] for o in by_ref[ref]["options"] if not o["is_correct"])
            for qid, ref in refs.items()
        }
        self.rationale = {qid: by_ref[ref]["rationale_md"] for qid, ref in refs.items()}
        self.topic = {qid: by_ref[ref]["topic"] for qid, ref in refs.items()}
        self.params = {
            qid: tuple(float(params.loc[ref, k]) for k in ("a", "b", "c", "D")) for qid, ref in refs.items()
        }

    def p_correct(self, question_id: int, theta: float) -> float:
        a, b, c, d = self.params[question_id]
        return c + (1 - c) / (1 + np.exp(-d * a * (theta - b)))


@pytest.fixture(scope="session")
def tenant() -> str:
    return TENANT


@pytest.fixture(scope="session")
def other_tenant() -> str:
    return OTHER_TENANT


@pytest.fixture
def restart_app(db):
    """Builds a new app (new engine, empty caches) on the same database: a service restart."""
    return lambda: create_app(make_settings(db))


@pytest.fixture(scope="session")
def take_quiz():
    return _take_quiz


def _take_quiz(api: Api, quiz_id: str, answer, n_max: int = 200, user: str = "alice") -> list[dict]:
    """Serve and answer until the quiz finishes; ``answer(next_json) -> label``. Returns the answers."""
    results = []
    for _ in range(n_max):
        r = api.get(f"/v1/quizzes/{quiz_id}/next", user=user)
        if r.status_code == 409:
            break
        assert r.status_code == 200, r.text
        item = r.json()
        r = api.post(
            f"/v1/quizzes/{quiz_id}/answers",
            user=user,
            json={"question_id": item["question_id"], "selected": answer(item), "time_taken_ms": 1200},
        )
        assert r.status_code == 200, r.text
        results.append(r.json())
        if r.json()["quiz_finished"]:
            break
    return results
