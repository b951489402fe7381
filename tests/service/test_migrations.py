"""The Alembic migrations build exactly the models' schema, on both backends."""

from __future__ import annotations

import importlib
import json
import pkgutil
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

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
    # K lives in bundle revisions only (migration 0014 dropped the mirrors).
    assert not {"item_exposure_control", "item_exposure_strata", "exposure_k_sets"} & tables
    assert {
        "users",
        "topics",
        "questions",
        "question_versions",
        "question_options",
        "question_publications",
        "item_calibration",
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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request, tmp_path):
    """An empty database of each backend of its own (migrated up and down by the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    yield request.getfixturevalue("empty_pg_url")


def test_0014_drops_the_k_mirrors_and_records_their_rows(fresh_url):
    """Rows of the dropped K tables go to the audit log, per tenant; down and up again work."""
    config = alembic_config(fresh_url)
    command.upgrade(config, "0017_outbox_relay")
    engine = make_engine(fresh_url, pool_size=1)
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO questions (id, tenant_id, external_ref, created_by, is_deleted, created_at) "
                    "VALUES (7, 't1', 'Q7', 'a', false, :now)"
                ),
                {"now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO item_exposure_control (question_id, version, tenant_id, sh_p, updated_at) "
                    "VALUES (7, 1, 't1', 0.4, :now)"
                ),
                {"now": now},
            )
            connection.execute(
                text(
                    "INSERT INTO item_exposure_strata (question_id, version, stratum, tenant_id, sh_p, updated_at) "
                    "VALUES (7, 1, 1, 't1', 0.25, :now)"
                ),
                {"now": now},
            )
        command.upgrade(config, "head")
        with engine.connect() as connection:
            rows = connection.execute(
                text(
                    "SELECT tenant_id, action, details FROM audit_log WHERE action = 'exposure.k_rows_dropped'"
                )
            ).all()
            tables = set(inspect(connection).get_table_names())
            columns = {c["name"] for c in inspect(connection).get_columns("exposure_bundles")}
        details = rows[0][2] if isinstance(rows[0][2], dict) else json.loads(rows[0][2])
        assert [(r[0], r[1]) for r in rows] == [("t1", "exposure.k_rows_dropped")]
        assert details == {"item_exposure_control": [[7, 1, 0.4]], "item_exposure_strata": [[7, 1, 1, 0.25]]}
        assert not {"item_exposure_control", "item_exposure_strata", "exposure_k_sets"} & tables
        assert {"parent_id", "reason"} <= columns
        command.downgrade(config, "0017_outbox_relay")
        with engine.connect() as connection:
            assert {"item_exposure_control", "exposure_k_sets"} <= set(inspect(connection).get_table_names())
        command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_0018_scores_options_and_responses_from_is_correct(fresh_url):
    """Existing options and responses get score 1 / 0 from is_correct; down drops the columns."""
    config = alembic_config(fresh_url)
    command.upgrade(config, "0014_bundle_revisions")
    engine = make_engine(fresh_url, pool_size=1)
    now = datetime.now(UTC)
    statements = [
        "INSERT INTO questions (id, tenant_id, external_ref, created_by, is_deleted, created_at) "
        "VALUES (7, 't1', 'Q7', 'a', false, :now)",
        "INSERT INTO question_versions (id, question_id, version, state, stem_md, lead_in, rationale_md, "
        'tags, assets, "references", created_by, created_at) '
        "VALUES (70, 7, 1, 'published', 's', '', 'r', '{}', '[]', '[]', 'a', :now)",
        "INSERT INTO question_options (id, question_version_id, option_label, option_text_md, is_correct) "
        "VALUES (1, 70, 'A', 'x', true), (2, 70, 'B', 'y', false)",
        "INSERT INTO pool_snapshots (id, tenant_id, exam_code, n_items, items, created_at) "
        "VALUES ('p', 't1', 'E', 1, '{}', :now)",
        "INSERT INTO quiz_sessions (id, tenant_id, user_id, mode, adaptive, exam_code, status, filters, "
        "selector, stopping, pool_snapshot_id, withdrawn, n_served, n_answered, n_correct, theta, se, "
        "created_at, expires_at) VALUES ('q', 't1', 'u', 'exam', true, 'E', 'active', '{}', '{}', '{}', "
        "'p', '[]', 2, 2, 1, 0.0, 1.0, :now, :now)",
        "INSERT INTO user_responses (id, tenant_id, quiz_id, position, user_id, question_id, version, "
        "question_version_id, option_label, is_correct, server_elapsed_ms, theta_before, se_before, "
        "theta_after, se_after, created_at) VALUES "
        "(1, 't1', 'q', 0, 'u', 7, 1, 70, 'A', true, 5, 0, 1, 0.5, 0.9, :now), "
        "(2, 't1', 'q', 1, 'u', 7, 1, 70, 'B', false, 5, 0.5, 0.9, 0.2, 0.8, :now)",
    ]
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.execute(text(statement), {"now": now})
        command.upgrade(config, "head")
        with engine.connect() as connection:
            options = connection.execute(text("SELECT id, score FROM question_options ORDER BY id")).all()
            responses = connection.execute(text("SELECT id, score FROM user_responses ORDER BY id")).all()
            calibration = {c["name"]: c for c in inspect(connection).get_columns("item_calibration")}
            nullable = {c["name"]: c["nullable"] for c in inspect(connection).get_columns("user_responses")}
            views = connection.execute(text("SELECT COUNT(*) FROM analytics_topic_mastery")).scalar()
        assert [tuple(r) for r in options] == [(1, 1), (2, 0)]
        assert [tuple(r) for r in responses] == [(1, 1), (2, 0)]
        assert calibration["thresholds"]["nullable"] and nullable["score"] is False
        assert views is not None  # the analytics views survived the table rebuilds
        command.downgrade(config, "0014_bundle_revisions")
        with engine.connect() as connection:
            assert "score" not in {c["name"] for c in inspect(connection).get_columns("question_options")}
            assert "score" not in {c["name"] for c in inspect(connection).get_columns("user_responses")}
            assert "thresholds" not in {
                c["name"] for c in inspect(connection).get_columns("item_calibration")
            }
            assert connection.execute(text("SELECT COUNT(*) FROM user_responses")).scalar() == 2
        command.upgrade(config, "head")
    finally:
        engine.dispose()
