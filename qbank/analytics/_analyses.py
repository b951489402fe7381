"""The four analyses, in DuckDB over a snapshot's fact tables (see :mod:`._snapshot`).

Each returns a DataFrame with the same columns, grain and meaning as the service database's
view of the same name (``analytics_<name>``, documented in ``service/analytics_models.py``), so a
report made from a snapshot and a BI dashboard on the live database agree. The SQL here is
written independently of the views (DuckDB's ``arg_max``, ``FILTER`` and full outer joins), and
:func:`compare_with_views` checks one against the other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "ANALYSES",
    "blueprint_coverage",
    "compare_with_views",
    "item_exposure_daily",
    "run_analyses",
    "selector_outcomes",
    "topic_mastery",
]

_TOPIC_MASTERY = """
WITH daily AS (
    SELECT r.tenant_id, s.exam_code, r.user_id, v.topic_id, CAST(r.created_at AS DATE) AS day,
           count(*) AS attempts,
           count_if(r.is_correct) AS correct,
           count(r.time_taken_ms) AS timed_attempts,
           sum(r.time_taken_ms) AS total_time_ms,
           arg_max(r.theta_after, (r.created_at, r.response_id)) AS latest_theta,
           arg_max(r.se_after, (r.created_at, r.response_id)) AS latest_se,
           sum(r.score) AS points,
           sum(v.max_score) AS max_points
    FROM responses r
    JOIN quiz_sessions s ON s.quiz_id = r.quiz_id
    JOIN question_versions v ON v.question_version_id = r.question_version_id
    GROUP BY ALL
)
SELECT d.tenant_id, d.exam_code, d.user_id, d.topic_id, t.topic_name, d.day,
       d.attempts, d.correct, d.correct / d.attempts AS accuracy,
       d.timed_attempts, d.total_time_ms, d.total_time_ms / nullif(d.timed_attempts, 0) AS mean_time_ms,
       d.latest_theta, d.latest_se,
       sum(d.attempts) OVER running AS cumulative_attempts,
       sum(d.correct) OVER running AS cumulative_correct,
       sum(d.correct) OVER running / sum(d.attempts) OVER running AS cumulative_accuracy,
       d.points, d.max_points, d.points / nullif(d.max_points, 0) AS credit,
       sum(d.points) OVER running AS cumulative_points,
       sum(d.max_points) OVER running AS cumulative_max_points,
       sum(d.points) OVER running / nullif(sum(d.max_points) OVER running, 0) AS cumulative_credit
FROM daily d
LEFT JOIN topics t ON t.topic_id = d.topic_id AND t.tenant_id = d.tenant_id
WINDOW running AS (PARTITION BY d.tenant_id, d.exam_code, d.user_id, d.topic_id ORDER BY d.day)
ORDER BY d.tenant_id, d.exam_code, d.user_id, d.topic_id, d.day
"""

_BLUEPRINT_COVERAGE = """
WITH live AS (
    SELECT p.tenant_id, p.exam_code, v.topic_id, coalesce(v.difficulty_label, 'unlabelled') AS difficulty_label,
           count(*) AS published_items
    FROM publications p
    JOIN question_versions v ON v.question_version_id = p.question_version_id
    JOIN questions q ON q.question_id = p.question_id
    WHERE NOT q.is_deleted
    GROUP BY ALL
),
cells AS (
    SELECT coalesce(l.tenant_id, b.tenant_id) AS tenant_id, coalesce(l.exam_code, b.exam_code) AS exam_code,
           coalesce(l.topic_id, b.topic_id) AS topic_id,
           coalesce(l.difficulty_label, b.difficulty_label) AS difficulty_label,
           coalesce(l.published_items, 0) AS published_items, b.target_items
    FROM live l
    FULL OUTER JOIN blueprint_targets b
      ON b.tenant_id = l.tenant_id AND b.exam_code = l.exam_code
     AND b.topic_id IS NOT DISTINCT FROM l.topic_id AND b.difficulty_label = l.difficulty_label
)
SELECT c.tenant_id, c.exam_code, c.topic_id, t.topic_name, t.blueprint_code, c.difficulty_label,
       c.published_items, c.target_items,
       CASE WHEN c.target_items IS NOT NULL THEN greatest(c.target_items - c.published_items, 0) END AS gap_items,
       c.published_items / nullif(c.target_items, 0) AS coverage_ratio,
       CASE WHEN c.target_items IS NULL THEN 'untargeted'
            WHEN c.published_items < c.target_items THEN 'short' ELSE 'met' END AS status
FROM cells c
LEFT JOIN topics t ON t.topic_id = c.topic_id AND t.tenant_id = c.tenant_id
ORDER BY c.tenant_id, c.exam_code, c.topic_id, c.difficulty_label
"""

_ITEM_EXPOSURE_DAILY = """
WITH served AS (
    SELECT s.tenant_id, s.exam_code, i.quiz_id, i.question_id, CAST(i.served_at AS DATE) AS day
    FROM quiz_items i
    JOIN quiz_sessions s ON s.quiz_id = i.quiz_id
),
exam_days AS (
    SELECT tenant_id, exam_code, day, count(DISTINCT quiz_id) AS sessions FROM served GROUP BY ALL
)
SELECT s.tenant_id, s.exam_code, s.day, s.question_id, q.external_ref,
       count(*) AS administrations, any_value(d.sessions) AS sessions,
       count(*) / any_value(d.sessions) AS exposure_rate
FROM served s
JOIN exam_days d USING (tenant_id, exam_code, day)
JOIN questions q ON q.question_id = s.question_id
GROUP BY s.tenant_id, s.exam_code, s.day, s.question_id, q.external_ref
ORDER BY s.tenant_id, s.exam_code, s.day, s.question_id
"""

_SELECTOR_OUTCOMES = """
WITH quiz_credit AS (
    SELECT r.quiz_id, sum(r.score) / nullif(sum(v.max_score), 0) AS credit
    FROM responses r
    LEFT JOIN question_versions v ON v.question_version_id = r.question_version_id
    GROUP BY ALL
),
arms AS (
    SELECT tenant_id, exam_code, selector_rule, assignment,
           count(*) AS quizzes,
           count(DISTINCT user_id) AS users,
           count(*) FILTER (WHERE status = 'finished') AS quizzes_finished,
           count(*) FILTER (WHERE n_served > 0) AS quizzes_with_items,
           sum(n_served) AS items_served,
           avg(theta) FILTER (WHERE status = 'finished') AS mean_final_theta,
           avg(se) FILTER (WHERE status = 'finished') AS mean_final_se,
           avg(n_answered) FILTER (WHERE status = 'finished') AS mean_answered,
           avg(n_correct / n_answered) FILTER (WHERE status = 'finished' AND n_answered > 0) AS mean_score,
           avg(credit) FILTER (WHERE status = 'finished' AND n_answered > 0) AS mean_credit
    FROM quiz_sessions
    LEFT JOIN quiz_credit USING (quiz_id)
    GROUP BY ALL
),
per_item AS (
    SELECT s.tenant_id, s.exam_code, s.selector_rule, s.assignment, i.question_id, count(*) AS n
    FROM quiz_items i
    JOIN quiz_sessions s ON s.quiz_id = i.quiz_id
    GROUP BY ALL
),
spread AS (
    SELECT tenant_id, exam_code, selector_rule, assignment, max(n) AS most, sum(n * (n - 1)) AS shared
    FROM per_item
    GROUP BY ALL
)
SELECT a.tenant_id, a.exam_code, a.selector_rule, a.assignment, a.quizzes, a.users, a.quizzes_finished,
       a.quizzes_with_items,
       a.items_served / nullif(a.quizzes_with_items, 0) AS mean_items_served,
       a.mean_final_theta, a.mean_final_se, a.mean_answered, a.mean_score,
       s.most / nullif(a.quizzes_with_items, 0) AS max_exposure_rate,
       CASE WHEN a.quizzes_with_items > 1
            THEN s.shared / (a.quizzes_with_items * (a.quizzes_with_items - 1))
                 / (a.items_served / a.quizzes_with_items) END AS test_overlap,
       a.mean_credit
FROM arms a
LEFT JOIN spread s USING (tenant_id, exam_code, selector_rule, assignment)
ORDER BY a.tenant_id, a.exam_code, a.selector_rule, a.assignment
"""

# name -> (SQL, key columns that identify a row)
ANALYSES: dict[str, tuple[str, list[str]]] = {
    "topic_mastery": (_TOPIC_MASTERY, ["tenant_id", "exam_code", "user_id", "topic_id", "day"]),
    "blueprint_coverage": (_BLUEPRINT_COVERAGE, ["tenant_id", "exam_code", "topic_id", "difficulty_label"]),
    "item_exposure_daily": (_ITEM_EXPOSURE_DAILY, ["tenant_id", "exam_code", "day", "question_id"]),
    "selector_outcomes": (_SELECTOR_OUTCOMES, ["tenant_id", "exam_code", "selector_rule", "assignment"]),
}


def _run(con, name: str) -> pd.DataFrame:
    frame = con.execute(ANALYSES[name][0]).df()
    if "day" in frame.columns:  # DuckDB DATE -> datetime64; people and CSVs want the date
        frame["day"] = pd.to_datetime(frame["day"]).dt.date
    return frame


def topic_mastery(con) -> pd.DataFrame:
    """Answers per tenant, exam, user, topic and UTC day: attempts, accuracy (full credit),
    credit (points over maximum points: partial credit of items scored ``0 .. m-1``, accuracy on
    0/1 items), mean time, latest theta and SE, and running totals over days (see
    ``analytics_topic_mastery``)."""
    return _run(con, "topic_mastery")


def blueprint_coverage(con) -> pd.DataFrame:
    """Live items per tenant, exam, topic and difficulty label against the blueprint targets,
    with the gap and a status of short, met or untargeted."""
    return _run(con, "blueprint_coverage")


def item_exposure_daily(con) -> pd.DataFrame:
    """Administrations per item and UTC day, over the quizzes of the exam served that day."""
    return _run(con, "item_exposure_daily")


def selector_outcomes(con) -> pd.DataFrame:
    """Quizzes, final SE and theta, score (full-credit share) and credit, max exposure rate and
    test overlap per selection rule and assignment (cohort, flag, default) of each tenant and exam."""
    return _run(con, "selector_outcomes")


def run_analyses(con) -> dict[str, pd.DataFrame]:
    """All four analyses on one snapshot connection, by name."""
    return {name: _run(con, name) for name in ANALYSES}


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def compare_with_views(
    results: dict[str, pd.DataFrame], views: dict[str, pd.DataFrame], rtol: float = 1e-9
) -> dict[str, str]:
    """Compare each analysis with the database view snapshot of the same name.

    Returns ``{name: "match"}`` or a one-line description of the first differences (row count,
    missing columns, or the columns whose values differ). Views absent from ``views`` are
    reported as ``"no view snapshot"``.
    """
    verdicts = {}
    for name, result in results.items():
        view = views.get(name)
        if view is None:
            verdicts[name] = "no view snapshot"
            continue
        missing = [c for c in result.columns if c not in view.columns]
        if missing:
            verdicts[name] = f"view lacks columns {missing}"
            continue
        if len(view) != len(result):
            verdicts[name] = f"{len(result)} rows here, {len(view)} in the view"
            continue
        keys = ANALYSES[name][1]
        left, right = _sorted(result, keys), _sorted(view[list(result.columns)], keys)
        differing = []
        for column in result.columns:
            a, b = left[column], right[column]
            if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
                x, y = a.to_numpy(dtype=float, na_value=np.nan), b.to_numpy(dtype=float, na_value=np.nan)
                same = np.isclose(x, y, rtol=rtol, atol=1e-12, equal_nan=True)
            else:
                same = (a.isna() & b.isna()) | (a.astype(object) == b.astype(object))
            if not np.all(same):
                differing.append(column)
        verdicts[name] = "match" if not differing else f"values differ in {differing}"
    return verdicts
