"""Analytics: ``blueprint_targets`` and the four analytics views (see ``service/analytics_models.py``).

The view SQL is portable except for two fragments per dialect: the UTC calendar day of a
timestamp and reading a key of a JSON column. It is written out here, frozen with this
revision; a later change to a view is a new revision that drops and re-creates it.

Later migrations, beware: the views read ``user_responses``, ``quiz_sessions``, ``quiz_items``,
``question_versions``, ``question_publications``, ``questions``, ``topics`` and
``blueprint_targets``. On SQLite, a ``batch_alter_table`` that recreates one of these tables
fails at its final rename ("error in view ...: no such table") unless the migration first
runs ``PRAGMA legacy_alter_table=ON`` or drops the views and re-creates them afterwards; on
PostgreSQL, dropping or retyping a column a view reads needs the same drop and re-create.

Revision ID: 0002_analytics
Revises: 0001
Create Date: 2026-11-24 21:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_analytics"
down_revision = "0001"
branch_labels = None
depends_on = None

# Calendar day (UTC) of a timestamp column. SQLite stores UTC text ("YYYY-MM-DD HH:MM:SS...").
_DAY = {
    "sqlite": "date({column})",
    "postgresql": "CAST(({column} AT TIME ZONE 'UTC') AS DATE)",
}
# A text member of a JSON column (the service's JSON is ``json`` on PostgreSQL).
_JSON_TEXT = {
    "sqlite": "json_extract({column}, '$.{key}')",
    "postgresql": "({column} ->> '{key}')",
}

TOPIC_MASTERY = """
CREATE VIEW analytics_topic_mastery AS
WITH answers AS (
    SELECT r.tenant_id, s.exam_code, r.user_id, v.topic_id, {response_day} AS day,
           r.is_correct, r.time_taken_ms, r.theta_after, r.se_after,
           ROW_NUMBER() OVER (PARTITION BY r.tenant_id, s.exam_code, r.user_id, v.topic_id, {response_day}
                              ORDER BY r.created_at DESC, r.id DESC) AS recency
    FROM user_responses r
    JOIN quiz_sessions s ON s.id = r.quiz_id
    JOIN question_versions v ON v.id = r.question_version_id
),
daily AS (
    SELECT tenant_id, exam_code, user_id, topic_id, day,
           COUNT(*) AS attempts,
           SUM(CASE WHEN is_correct THEN 1 ELSE 0 END) AS correct,
           COUNT(time_taken_ms) AS timed_attempts,
           SUM(time_taken_ms) AS total_time_ms,
           MAX(CASE WHEN recency = 1 THEN theta_after END) AS latest_theta,
           MAX(CASE WHEN recency = 1 THEN se_after END) AS latest_se
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
           / CAST(SUM(d.attempts) OVER running AS DOUBLE PRECISION) AS cumulative_accuracy
FROM daily d
LEFT JOIN topics t ON t.id = d.topic_id AND t.tenant_id = d.tenant_id
WINDOW running AS (PARTITION BY d.tenant_id, d.exam_code, d.user_id, d.topic_id ORDER BY d.day
                   ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
"""

# Publications and targets stacked, then grouped: a portable full outer join that also keeps
# the cells whose topic is NULL (GROUP BY puts NULLs together, an equality join would not).
BLUEPRINT_COVERAGE = """
CREATE VIEW analytics_blueprint_coverage AS
WITH stacked AS (
    SELECT p.tenant_id, p.exam_code, v.topic_id,
           COALESCE(v.difficulty_label, 'unlabelled') AS difficulty_label,
           1 AS published, CAST(NULL AS INTEGER) AS target_items
    FROM question_publications p
    JOIN question_versions v ON v.id = p.question_version_id
    JOIN questions q ON q.id = p.question_id
    WHERE NOT q.is_deleted
    UNION ALL
    SELECT tenant_id, exam_code, topic_id, difficulty_label, 0, target_items
    FROM blueprint_targets
),
cells AS (
    SELECT tenant_id, exam_code, topic_id, difficulty_label,
           SUM(published) AS published_items, MAX(target_items) AS target_items
    FROM stacked
    GROUP BY tenant_id, exam_code, topic_id, difficulty_label
)
SELECT c.tenant_id, c.exam_code, c.topic_id, t.name AS topic_name, t.blueprint_code, c.difficulty_label,
       c.published_items, c.target_items,
       CASE WHEN c.target_items IS NULL THEN NULL
            WHEN c.target_items > c.published_items THEN c.target_items - c.published_items
            ELSE 0 END AS gap_items,
       CASE WHEN c.target_items > 0
            THEN CAST(c.published_items AS DOUBLE PRECISION) / c.target_items END AS coverage_ratio,
       CASE WHEN c.target_items IS NULL THEN 'untargeted'
            WHEN c.published_items < c.target_items THEN 'short'
            ELSE 'met' END AS status
FROM cells c
LEFT JOIN topics t ON t.id = c.topic_id AND t.tenant_id = c.tenant_id
"""

ITEM_EXPOSURE_DAILY = """
CREATE VIEW analytics_item_exposure_daily AS
WITH served AS (
    SELECT s.tenant_id, s.exam_code, i.quiz_id, i.question_id, {served_day} AS day
    FROM quiz_items i
    JOIN quiz_sessions s ON s.id = i.quiz_id
),
exam_days AS (
    SELECT tenant_id, exam_code, day, COUNT(DISTINCT quiz_id) AS sessions
    FROM served
    GROUP BY tenant_id, exam_code, day
),
item_days AS (
    SELECT tenant_id, exam_code, day, question_id, COUNT(*) AS administrations
    FROM served
    GROUP BY tenant_id, exam_code, day, question_id
)
SELECT i.tenant_id, i.exam_code, i.day, i.question_id, q.external_ref,
       i.administrations, d.sessions,
       CAST(i.administrations AS DOUBLE PRECISION) / d.sessions AS exposure_rate
FROM item_days i
JOIN exam_days d ON d.tenant_id = i.tenant_id AND d.exam_code = i.exam_code AND d.day = i.day
JOIN questions q ON q.id = i.question_id
"""

SELECTOR_OUTCOMES = """
CREATE VIEW analytics_selector_outcomes AS
WITH quizzes AS (
    SELECT id, tenant_id, exam_code, user_id, status, n_served, n_answered, n_correct, theta, se,
           COALESCE({selector_rule}, 'unknown') AS selector_rule,
           COALESCE({selector_source}, 'unknown') AS assignment
    FROM quiz_sessions
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
                    THEN CAST(n_correct AS DOUBLE PRECISION) / n_answered END) AS mean_score
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
                 / (CAST(a.items_served AS DOUBLE PRECISION) / a.quizzes_with_items) END AS test_overlap
FROM arms a
LEFT JOIN item_stats s
       ON s.tenant_id = a.tenant_id AND s.exam_code = a.exam_code
      AND s.selector_rule = a.selector_rule AND s.assignment = a.assignment
"""

VIEW_NAMES = (
    "analytics_topic_mastery",
    "analytics_blueprint_coverage",
    "analytics_item_exposure_daily",
    "analytics_selector_outcomes",
)


def _view_sql(dialect: str) -> list[str]:
    if dialect not in _DAY:
        raise NotImplementedError(f"analytics views are written for sqlite and postgresql, not {dialect}")
    day, json_text = _DAY[dialect], _JSON_TEXT[dialect]
    return [
        TOPIC_MASTERY.format(response_day=day.format(column="r.created_at")),
        BLUEPRINT_COVERAGE,
        ITEM_EXPOSURE_DAILY.format(served_day=day.format(column="i.served_at")),
        SELECTOR_OUTCOMES.format(
            selector_rule=json_text.format(column="selector", key="rule"),
            selector_source=json_text.format(column="selector", key="source"),
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "blueprint_targets",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("exam_code", sa.String(length=64), nullable=False),
        sa.Column("topic_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("difficulty_label", sa.String(length=16), nullable=False),
        sa.Column("target_items", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("target_items >= 0", name="ck_blueprint_targets_nonnegative"),
        sa.ForeignKeyConstraint(["topic_id"], ["topics.id"]),
        sa.PrimaryKeyConstraint("tenant_id", "exam_code", "topic_id", "difficulty_label"),
    )
    for statement in _view_sql(op.get_context().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for name in reversed(VIEW_NAMES):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("blueprint_targets")
