"""The analytics views return the hand-computed rows of the conftest data set, on SQLite and
PostgreSQL; the migration creates and drops them."""

from __future__ import annotations

import math
from datetime import date

import pytest
from analytics_dataset import load_dataset
from sqlalchemy import inspect, select, text

from service.analytics_models import (
    ANALYTICS_VIEWS,
    blueprint_coverage,
    item_exposure_daily,
    selector_outcomes,
    topic_mastery,
)
from service.db import alembic_config, make_engine, migrate

D20, D21, D22 = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
A, B, P = "tenant-a", "tenant-b", "tenant-p"
NAN = float("nan")


def _rows(url, view, keys, columns, *, timezone=None):
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            if timezone and engine.dialect.name == "postgresql":
                # the day must not follow the session's time zone
                conn.execute(text(f"SET TIME ZONE '{timezone}'"))
            result = conn.execute(select(*(view.c[k] for k in keys + columns)))
            return {tuple(r[: len(keys)]): tuple(r[len(keys) :]) for r in result}
    finally:
        engine.dispose()


def _same(actual: dict, expected: dict):
    assert sorted(actual, key=repr) == sorted(expected, key=repr)
    for key, values in expected.items():
        for got, want in zip(actual[key], values, strict=True):
            if isinstance(want, float) and math.isnan(want):
                assert got is None, (key, actual[key])
            elif isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-12), (key, actual[key], values)
            else:
                assert got == want, (key, actual[key], values)


def test_topic_mastery(analytics_db):
    columns = [
        "topic_name",
        "attempts",
        "correct",
        "accuracy",
        "timed_attempts",
        "total_time_ms",
        "mean_time_ms",
        "latest_theta",
        "latest_se",
        "cumulative_attempts",
        "cumulative_correct",
        "cumulative_accuracy",
    ]
    actual = _rows(
        analytics_db,
        topic_mastery,
        ["tenant_id", "exam_code", "user_id", "topic_id", "day"],
        columns,
        timezone="Pacific/Auckland",
    )
    _same(
        actual,
        {
            (A, "EXAM-A", "alice", 1, D20): ("Fractions", 2, 1, 0.5, 2, 4000, 2000.0, -0.1, 0.8, 2, 1, 0.5),
            (A, "EXAM-A", "alice", 1, D21): ("Fractions", 1, 1, 1.0, 1, 2000, 2000.0, 0.8, 0.85, 3, 2, 2 / 3),
            # the only answer carries no time: no mean time
            (A, "EXAM-A", "alice", 2, D20): ("Decimals", 1, 1, 1.0, 0, None, NAN, 0.5, 0.6, 1, 1, 1.0),
            (A, "EXAM-A", "alice", 2, D21): ("Decimals", 1, 1, 1.0, 1, 4000, 4000.0, 1.0, 0.7, 2, 2, 1.0),
            # answered at 00:30 and 00:40 UTC+1 on the 21st: the 20th in UTC
            (A, "EXAM-A", "bob", 1, D20): ("Fractions", 1, 1, 1.0, 1, 1500, 1500.0, 0.4, 0.9, 1, 1, 1.0),
            (A, "EXAM-A", "bob", 2, D20): ("Decimals", 1, 0, 0.0, 1, 2500, 2500.0, -0.2, 0.75, 1, 0, 0.0),
            (B, "EXAM-A", "alice", 3, D20): ("Fractions", 1, 0, 0.0, 1, 500, 500.0, -0.5, 0.9, 1, 0, 0.0),
            # partial credit items: one answer of three with full credit (their credit below)
            (P, "EXAM-A", "erin", 4, D22): ("Ratios", 3, 1, 1 / 3, 3, 6000, 2000.0, 0.1, 0.6, 3, 1, 1 / 3),
        },
    )


def test_topic_mastery_credit(analytics_db):
    """Points over maximum points: the accuracy on 0/1 items, partial credit on the others."""
    columns = [
        "correct",
        "attempts",
        "points",
        "max_points",
        "credit",
        "cumulative_points",
        "cumulative_max_points",
        "cumulative_credit",
    ]
    actual = _rows(
        analytics_db, topic_mastery, ["tenant_id", "exam_code", "user_id", "topic_id", "day"], columns
    )
    _same(
        actual,
        {
            (A, "EXAM-A", "alice", 1, D20): (1, 2, 1, 2, 0.5, 1, 2, 0.5),
            (A, "EXAM-A", "alice", 1, D21): (1, 1, 1, 1, 1.0, 2, 3, 2 / 3),
            (A, "EXAM-A", "alice", 2, D20): (1, 1, 1, 1, 1.0, 1, 1, 1.0),
            (A, "EXAM-A", "alice", 2, D21): (1, 1, 1, 1, 1.0, 2, 2, 1.0),
            (A, "EXAM-A", "bob", 1, D20): (1, 1, 1, 1, 1.0, 1, 1, 1.0),
            (A, "EXAM-A", "bob", 2, D20): (0, 1, 0, 1, 0.0, 0, 1, 0.0),
            (B, "EXAM-A", "alice", 3, D20): (0, 1, 0, 1, 0.0, 0, 1, 0.0),
            # 2 of 3, 1 of 1 and 0 of 2 points: half the points, though one answer in three is right
            (P, "EXAM-A", "erin", 4, D22): (1, 3, 3, 6, 0.5, 3, 6, 0.5),
        },
    )


def test_blueprint_coverage(analytics_db):
    columns = [
        "topic_name",
        "blueprint_code",
        "published_items",
        "target_items",
        "gap_items",
        "coverage_ratio",
        "status",
    ]
    actual = _rows(
        analytics_db, blueprint_coverage, ["tenant_id", "exam_code", "topic_id", "difficulty_label"], columns
    )
    _same(
        actual,
        {
            # I6 is deleted: one live easy Fractions item of two wanted
            (A, "EXAM-A", 1, "easy"): ("Fractions", "F", 1, 2, 1, 0.5, "short"),
            (A, "EXAM-A", 1, "medium"): ("Fractions", "F", 1, 1, 0, 1.0, "met"),
            # I3's live version 2 is hard Decimals (version 1 was medium Fractions)
            (A, "EXAM-A", 2, "hard"): ("Decimals", "D", 1, 3, 2, 1 / 3, "short"),
            (A, "EXAM-A", 2, "medium"): ("Decimals", "D", 0, 2, 2, 0.0, "short"),
            (A, "EXAM-A", 2, "easy"): ("Decimals", "D", 1, None, None, NAN, "untargeted"),
            (A, "EXAM-A", 2, "unlabelled"): ("Decimals", "D", 1, None, None, NAN, "untargeted"),
            (A, "EXAM-B", 2, "easy"): ("Decimals", "D", 1, None, None, NAN, "untargeted"),
            (B, "EXAM-A", 3, "easy"): ("Fractions", None, 1, None, None, NAN, "untargeted"),
            (P, "EXAM-A", 4, "hard"): ("Ratios", "R", 2, None, None, NAN, "untargeted"),
            (P, "EXAM-A", 4, "easy"): ("Ratios", "R", 1, None, None, NAN, "untargeted"),
        },
    )


def test_item_exposure_daily(analytics_db):
    actual = _rows(
        analytics_db,
        item_exposure_daily,
        ["tenant_id", "exam_code", "day", "question_id"],
        ["external_ref", "administrations", "sessions", "exposure_rate"],
        timezone="Asia/Tokyo",
    )
    _same(
        actual,
        {
            # the 20th: quizzes qa (I1, I2, I3) and qc (I2, I4)
            (A, "EXAM-A", D20, 1): ("I1", 1, 2, 0.5),
            (A, "EXAM-A", D20, 2): ("I2", 2, 2, 1.0),
            (A, "EXAM-A", D20, 3): ("I3", 1, 2, 0.5),
            (A, "EXAM-A", D20, 4): ("I4", 1, 2, 0.5),
            # the 21st: qb (I1, I4) and qd (I1)
            (A, "EXAM-A", D21, 1): ("I1", 2, 2, 1.0),
            (A, "EXAM-A", D21, 4): ("I4", 1, 2, 0.5),
            (B, "EXAM-A", D20, 7): ("I1", 1, 1, 1.0),
            (P, "EXAM-A", D22, 8): ("P1", 1, 1, 1.0),
            (P, "EXAM-A", D22, 9): ("D1", 1, 1, 1.0),
            (P, "EXAM-A", D22, 10): ("P2", 1, 1, 1.0),
        },
    )


def test_selector_outcomes(analytics_db):
    columns = [
        "quizzes",
        "users",
        "quizzes_finished",
        "quizzes_with_items",
        "mean_items_served",
        "mean_final_theta",
        "mean_final_se",
        "mean_answered",
        "mean_score",
        "max_exposure_rate",
        "test_overlap",
    ]
    actual = _rows(
        analytics_db, selector_outcomes, ["tenant_id", "exam_code", "selector_rule", "assignment"], columns
    )
    _same(
        actual,
        {
            # qa {I1, I2, I3} and qb {I1, I4}: one item in common over a mean length of 2.5
            (A, "EXAM-A", "max_info", "cohort"): (
                2,
                1,
                2,
                2,
                2.5,
                0.75,
                0.65,
                2.5,
                (2 / 3 + 1) / 2,
                1.0,
                0.4,
            ),
            # qe never got an item: nothing to average
            (A, "EXAM-A", "max_info", "default"): (1, 1, 0, 0, NAN, NAN, NAN, NAN, NAN, NAN, NAN),
            # qc {I2, I4} finished, qd {I1} still active; no item shared
            (A, "EXAM-A", "sympson_hetter", "cohort"): (2, 2, 1, 2, 1.5, -0.2, 0.75, 2.0, 0.5, 0.5, 0.0),
            # one quiz: no pair to overlap
            (B, "EXAM-A", "max_info", "cohort"): (1, 1, 1, 1, 1.0, -0.5, 0.9, 1.0, 0.0, 1.0, NAN),
            # one answer of three with full credit
            (P, "EXAM-A", "max_info", "cohort"): (1, 1, 1, 1, 3.0, 0.1, 0.6, 3.0, 1 / 3, 1.0, NAN),
        },
    )


def test_selector_outcomes_credit(analytics_db):
    """The mean of the finished quizzes' points over maximum points: the mean score on 0/1 items."""
    actual = _rows(
        analytics_db,
        selector_outcomes,
        ["tenant_id", "exam_code", "selector_rule", "assignment"],
        ["mean_score", "mean_credit"],
    )
    _same(
        actual,
        {
            (A, "EXAM-A", "max_info", "cohort"): ((2 / 3 + 1) / 2, (2 / 3 + 1) / 2),
            (A, "EXAM-A", "max_info", "default"): (NAN, NAN),
            (A, "EXAM-A", "sympson_hetter", "cohort"): (0.5, 0.5),  # qd is not finished
            (B, "EXAM-A", "max_info", "cohort"): (0.0, 0.0),
            (P, "EXAM-A", "max_info", "cohort"): (1 / 3, 0.5),  # 3 of 6 points
        },
    )


def test_views_columns_match_their_table_definitions(analytics_db):
    """service.analytics_models describes each view's columns in order; the database agrees."""
    engine = make_engine(analytics_db, pool_size=1)
    try:
        with engine.connect() as conn:
            for name, view in ANALYTICS_VIEWS.items():
                keys = list(conn.execute(text(f"SELECT * FROM {name} WHERE 1 = 0")).keys())
                assert keys == [c.name for c in view.columns], name
    finally:
        engine.dispose()


def test_downgrade_drops_views_and_targets_and_upgrade_restores_them(tmp_path):
    from alembic import command
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'q.db'}"
    migrate(url)
    engine = make_engine(url, pool_size=1)
    try:
        assert set(ANALYTICS_VIEWS) <= set(inspect(engine).get_view_names())
        config = alembic_config(url)
        before_analytics = ScriptDirectory.from_config(config).get_revision("0002_analytics").down_revision
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, before_analytics)
        inspector = inspect(engine)
        assert not set(ANALYTICS_VIEWS) & set(inspector.get_view_names())
        assert "blueprint_targets" not in inspector.get_table_names()
        assert "quiz_sessions" in inspector.get_table_names()
        migrate(url)
        assert set(ANALYTICS_VIEWS) <= set(inspect(engine).get_view_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_0019_down_restores_the_views_without_credit_and_up_adds_it(backend, tmp_path, pg_database):
    from alembic import command

    url = f"sqlite:///{tmp_path / 'q.db'}" if backend == "sqlite" else pg_database()
    migrate(url)
    load_dataset(url)
    engine = make_engine(url, pool_size=1)
    credit = {"points", "max_points", "credit", "cumulative_points", "cumulative_max_points"}
    credit |= {"cumulative_credit", "mean_credit"}

    def columns(view: str) -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(text(f"SELECT * FROM {view} WHERE 1 = 0")).keys())

    try:
        config = alembic_config(url)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0018_polytomous")
        for name in ("analytics_topic_mastery", "analytics_selector_outcomes"):
            before = [c.name for c in ANALYTICS_VIEWS[name].columns if c.name not in credit]
            assert columns(name) == before, name
        # the 0002 view still reads the data: erin's one right answer of three
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT correct, accuracy FROM analytics_topic_mastery WHERE user_id = 'erin'")
            )
            assert [tuple(r) for r in row] == [(1, pytest.approx(1 / 3))]
        migrate(url)
        for name, view in ANALYTICS_VIEWS.items():
            assert columns(name) == [c.name for c in view.columns], name
    finally:
        engine.dispose()
