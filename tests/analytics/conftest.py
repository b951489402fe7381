"""Fixtures for the analytics tests: the hand-built data set of analytics_dataset.py in a
migrated database, on SQLite and on a fresh PostgreSQL database (created and dropped with the
service tests' helpers in tests/service/conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from analytics_dataset import load_dataset

from service.db import migrate

ROOT = Path(__file__).resolve().parents[2]


def _service_conftest():
    """tests/service/conftest.py as a module (its PostgreSQL database helpers)."""
    spec = importlib.util.spec_from_file_location(
        "_service_conftest_for_analytics", ROOT / "tests" / "service" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg_database():
    """A factory of fresh PostgreSQL databases, each dropped at the end of the run."""
    helpers = _service_conftest()
    names = []

    def create() -> str:
        names.append(helpers._create_pg_database())
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{names[-1]}"

    yield create
    for name in names:
        helpers._drop_pg_database(name)


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def analytics_db(request, tmp_path_factory, pg_database):
    """A migrated database holding the hand-built data set; tests only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('analytics') / 'qbank.db'}"
    else:
        url = pg_database()
    migrate(url)
    load_dataset(url)
    return url
