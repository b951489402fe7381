"""Analytics: partial credit in ``analytics_topic_mastery`` and ``analytics_selector_outcomes``.

Since 0018 an answer carries ``user_responses.score`` (0 .. m-1) and ``is_correct`` means full
credit only, so accuracy undersells an item scored in ordered categories (GRM/GPCM). The two
views are dropped and re-created with the columns of 0002 unchanged and, after them:

- topic mastery: ``points`` (sum of the answers' scores), ``max_points`` (sum of the answered
  items' top scores, ``m - 1``: the largest option score of the version answered), ``credit =
  points / max_points`` and their running totals ``cumulative_points``,
  ``cumulative_max_points``, ``cumulative_credit``. On 0/1 items points are ``correct``,
  max points ``attempts`` and credit ``accuracy``.
- selector outcomes: ``mean_credit``, the mean over finished quizzes with answers of each
  quiz's points over max points (``mean_score``, the share of answers with full credit, stays).

The SQL is frozen here as in 0002 (the same two dialect fragments); down re-creates 0002's views.

Revision ID: 0019_analytics_credit
Revises: 0018_polytomous
Create Date: 2026-12-05 08:10:00
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import op

revision = "0019_analytics_credit"
down_revision = "0018_polytomous"
branch_labels = None
depends_on = None

_DAY = {
    "sqlite": "date({column})",
    "postgresql": "CAST(({column} AT TIME ZONE 'UTC') AS DATE)",
}
_JSON_TEXT = {
    "sqlite": "json_extract({column}, '$.{key}')",
    "postgresql": "({column} ->> '{key}')",
}

# The top score of each question version: its largest option score (1 for a 0/1 item).
_VERSION_MAX = """version_max AS (
    SELECT question_version_id, MAX(score) AS max_score
    FROM question_options
    GROUP BY question_version_id
)"""

TOPIC_MASTERY = (
    """
CREATE VIEW analytics_topic_mastery AS
WITH """
    + _VERSION_MAX
    + """,
answers AS (
    SELECT r.tenant_id, s.exam_code, r.user_id, v.topic_id, {response_day} AS day,
           r.is_correct, r.score, m.max_score, r.time_taken_ms, r.theta_after, r.se_after,
           ROW_NUMBER() OVER (PARTITION BY r.tenant_id, s.exam_code, r.user_id, v.topic_id, {response_day}
                              ORDER BY r.created_at DESC, r.id DESC) AS recency
    FROM user_responses r
    JOIN quiz_sessions s ON s.id = r.quiz_id
    JOIN question_versions v ON v.id = r.question_version_id
    LEFT JOIN version_max m ON m.question_version_id = r.question_version_id
),
daily AS (
    SELECT tenant_id, exam_code, user_id, topic_id, day,
           COUNT(*) AS attempts,
           SUM(CASE WHEN is_correct THEN 1 ELSE 0 END) AS correct,
           COUNT(time_taken_ms) AS timed_attempts,
           SUM(time_taken_ms) AS total_time_ms,
           MAX(CASE WHEN recency = 1 THEN theta_after END) AS latest_theta,
           MAX(CASE WHEN recency = 1 THEN se_after END) AS latest_se,
           SUM(score) AS points,
           SUM(max_score) AS max_points
    FROM answers
    GROUP BY tenant_id, exam_code, user_id, topic_id, day
)
SELECT d.tenant_id, d.exam_code, d.user_id, d.topic_id, t.name AS topic_name, d.day,
       d.attempts, d.correct,
       CAST(d.correct AS DOUBLE PRECISION) / d.attempts AS accuracy,
       d.timed_attempts, d.total_time_ms,
       CASE WHEN d.timed_attempts > 0
            THEN CAST(d.total_time_ms AS DOUBLE PRECISION) / d.timed_attempts END AS mean_time_ms,
       d.latest_theta, d.latest_se,
       CAST(SUM(d.attempts) OVER running AS BIGINT) AS cumulative_attempts,
       CAST(SUM(d.correct) OVER running AS BIGINT) AS cumulative_correct,
       CAST(SUM(d.correct) OVER running AS DOUBLE PRECISION)
           / CAST(SUM(d.attempts) OVER running AS DOUBLE PRECISION) AS cumulative_accuracy,
       CAST(d.points AS BIGINT) AS points,
       CAST(d.max_points AS BIGINT) AS max_points,
       CASE WHEN d.max_points > 0 THEN CAST(d.points AS DOUBLE PRECISION) / d.max_points END AS credit,
       CAST(SUM(d.points) OVER running AS BIGINT) AS cumulative_points,
       CAST(SUM(d.max_points) OVER running AS BIGINT) AS cumulative_max_points,
       CASE WHEN SUM(d.max_points) OVER running > 0
            THEN CAST(SUM(d.points) OVER running AS DOUBLE PRECISION)
                 / CAST(SUM(d.max_points) OVER running AS DOUBLE PRECISION) END AS cumulative_credit
FROM daily d
LEFT JOIN topics t ON t.id = d.topic_id AND t.tenant_id = d.tenant_id
WINDOW running AS (PARTITION BY d.tenant_id, d.exam_code, d.user_id, d.topic_id ORDER BY d.day
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""
)

SELECTOR_OUTCOMES = (
    """
CREATE VIEW analytics_selector_outcomes AS
WITH """
    + _VERSION_MAX
    + """,
quiz_credit AS (
    SELECT r.quiz_id,
           CASE WHEN SUM(m.max_score) > 0
                THEN CAST(SUM(r.score) AS DOUBLE PRECISION) / SUM(m.max_score) END AS credit
    FROM user_responses r
    LEFT JOIN version_max m ON m.question_version_id = r.question_version_id
    GROUP BY r.quiz_id
),
quizzes AS (
    SELECT q.id, q.tenant_id, q.exam_code, q.user_id, q.status, q.n_served, q.n_answered, q.n_correct,
           q.theta, q.se, c.credit,
           COALESCE({selector_rule}, 'unknown') AS selector_rule,
           COALESCE({selector_source}, 'unknown') AS assignment
    FROM quiz_sessions q
    LEFT JOIN quiz_credit c ON c.quiz_id = q.id
),
arms AS (
    SELECT tenant_id, exam_code, selector_rule, assignment,
           COUNT(*) AS quizzes,
           COUNT(DISTINCT user_id) AS users,
           SUM(CASE WHEN status = 'finished' THEN 1 ELSE 0 END) AS quizzes_finished,
           SUM(CASE WHEN n_served > 0 THEN 1 ELSE 0 END) AS quizzes_with_items,
           SUM(n_served) AS items_served,
           AVG(CASE WHEN status = 'finished' THEN theta END) AS mean_final_theta,
           AVG(CASE WHEN status = 'finished' THEN se END) AS mean_final_se,
           AVG(CASE WHEN status = 'finished' THEN CAST(n_answered AS DOUBLE PRECISION) END) AS mean_answered,
           AVG(CASE WHEN status = 'finished' AND n_answered > 0
                    THEN CAST(n_correct AS DOUBLE PRECISION) / n_answered END) AS mean_score,
           AVG(CASE WHEN status = 'finished' AND n_answered > 0 THEN credit END) AS mean_credit
    FROM quizzes
    GROUP BY tenant_id, exam_code, selector_rule, assignment
),
item_counts AS (
    SELECT q.tenant_id, q.exam_code, q.selector_rule, q.assignment, i.question_id, COUNT(*) AS n_quizzes
    FROM quiz_items i
    JOIN quizzes q ON q.id = i.quiz_id
    GROUP BY q.tenant_id, q.exam_code, q.selector_rule, q.assignment, i.question_id
),
item_stats AS (
    SELECT tenant_id, exam_code, selector_rule, assignment,
           MAX(n_quizzes) AS most_quizzes_per_item,
           SUM(n_quizzes * (n_quizzes - 1)) AS items_shared_by_pairs
    FROM item_counts
    GROUP BY tenant_id, exam_code, selector_rule, assignment
)
SELECT a.tenant_id, a.exam_code, a.selector_rule, a.assignment,
       a.quizzes, a.users, a.quizzes_finished, a.quizzes_with_items,
       CASE WHEN a.quizzes_with_items > 0
            THEN CAST(a.items_served AS DOUBLE PRECISION) / a.quizzes_with_items END AS mean_items_served,
       a.mean_final_theta, a.mean_final_se, a.mean_answered, a.mean_score,
       CASE WHEN a.quizzes_with_items > 0
            THEN CAST(s.most_quizzes_per_item AS DOUBLE PRECISION) / a.quizzes_with_items END AS max_exposure_rate,
       CASE WHEN a.quizzes_with_items > 1
            THEN CAST(s.items_shared_by_pairs AS DOUBLE PRECISION)
                 / (CAST(a.quizzes_with_items AS DOUBLE PRECISION) * (a.quizzes_with_items - 1))
                 / (CAST(a.items_served AS DOUBLE PRECISION) / a.quizzes_with_items) END AS test_overlap,
       a.mean_credit
FROM arms a
LEFT JOIN item_stats s
       ON s.tenant_id = a.tenant_id AND s.exam_code = a.exam_code
      AND s.selector_rule = a.selector_rule AND s.assignment = a.assignment
"""
)

REPLACED = ("analytics_topic_mastery", "analytics_selector_outcomes")


def _dialect() -> str:
    dialect = op.get_context().dialect.name
    if dialect not in _DAY:
        raise NotImplementedError(f"analytics views are written for sqlite and postgresql, not {dialect}")
    return dialect


def _format(topic_mastery: str, selector_outcomes: str, dialect: str) -> list[str]:
    day, json_text = _DAY[dialect], _JSON_TEXT[dialect]
    return [
        topic_mastery.format(response_day=day.format(column="r.created_at")),
        selector_outcomes.format(
            selector_rule=json_text.format(column="selector", key="rule"),
            selector_source=json_text.format(column="selector", key="source"),
        ),
    ]


def _revision_0002():
    """0002's module, whose frozen SQL the downgrade re-creates (a file name is no module name)."""
    path = Path(__file__).with_name("0002_analytics_views.py")
    spec = importlib.util.spec_from_file_location("_qbank_migration_0002", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    dialect = _dialect()
    for name in REPLACED:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for statement in _format(TOPIC_MASTERY, SELECTOR_OUTCOMES, dialect):
        op.execute(statement)


def downgrade() -> None:
    dialect = _dialect()
    for name in REPLACED:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    before = _revision_0002()
    for statement in _format(before.TOPIC_MASTERY, before.SELECTOR_OUTCOMES, dialect):
        op.execute(statement)
