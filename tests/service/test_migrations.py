"""The Alembic migrations build exactly the models' schema, on both backends."""

from __future__ import annotations

import importlib
import pkgutil

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import service
from service.db import alembic_config, make_engine, migrate
from service.models import Base

# Every table module of the service registers on Base (e.g. service.models, service.analytics_models).
for _module in pkgutil.iter_modules(service.__path__):
    if _module.name.endswith("models"):
        importlib.import_module(f"service.{_module.name}")


def test_migrated_schema_matches_the_models(database_url):
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert differences == []
    assert {
        "users",
        "topics",
        "questions",
        "question_versions",
        "question_options",
        "question_publications",
        "item_calibration",
        "item_exposure_control",
        "exposure_bundles",
        "feature_flags",
        "cohort_assignments",
        "pool_snapshots",
        "quiz_sessions",
        "quiz_items",
        "user_responses",
        "outbox_events",
        "audit_log",
    } <= tables


def test_downgrade_and_upgrade_again(tmp_path):
    url = f"sqlite:///{tmp_path / 'cycle.db'}"
    migrate(url)
    command.downgrade(alembic_config(url), "base")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
        migrate(url)
        with engine.connect() as connection:
            assert len(inspect(connection).get_table_names()) == len(Base.metadata.tables) + 1
    finally:
        engine.dispose()
