"""Analytics data in and out of the service database, with SQLAlchemy Core.

:func:`export_snapshot` writes the Parquet snapshot that ``qbank analytics report`` reads
(layout and fact columns: :mod:`qbank.analytics._snapshot`), plus the four analytics views as
they are in the database. :func:`set_blueprint_targets` loads an exam's blueprint targets,
which the coverage view compares the live items against.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import BigInteger, Date, Float, Select, String, delete, func, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from qbank.analytics import FACT_SCHEMAS, SNAPSHOT_SCHEMA
from service.analytics_models import ANALYTICS_VIEWS, BlueprintTarget
from service.db import make_engine
from service.models import (
    Question,
    QuestionOption,
    QuestionPublication,
    QuestionVersion,
    QuizItem,
    QuizSession,
    Topic,
    UserResponse,
)

__all__ = ["TARGET_COLUMNS", "ExportError", "export_snapshot", "set_blueprint_targets"]

TARGET_COLUMNS = ("exam_code", "topic", "difficulty_label", "target_items")


class ExportError(ValueError):
    """The database cannot be exported (unreachable, not migrated) or the input is invalid."""


def _fact_queries(tenant_id: str | None) -> dict[str, Select]:
    """One SELECT per fact table, columns in the order of ``FACT_SCHEMAS``."""

    def scoped(query: Select, column) -> Select:
        return query if tenant_id is None else query.where(column == tenant_id)

    quiz = QuizSession
    # a version's full credit: its top option score (m - 1 for m score categories)
    top_score = (
        select(QuestionOption.question_version_id, func.max(QuestionOption.score).label("max_score"))
        .group_by(QuestionOption.question_version_id)
        .subquery()
    )
    return {
        "topics": scoped(
            select(Topic.tenant_id, Topic.id, Topic.name, Topic.blueprint_code), Topic.tenant_id
        ),
        "questions": scoped(
            select(Question.tenant_id, Question.id, Question.external_ref, Question.is_deleted),
            Question.tenant_id,
        ),
        "question_versions": scoped(
            select(
                QuestionVersion.id,
                QuestionVersion.question_id,
                QuestionVersion.version,
                QuestionVersion.state,
                QuestionVersion.topic_id,
                QuestionVersion.difficulty_label,
                top_score.c.max_score,
            )
            .join(Question, Question.id == QuestionVersion.question_id)
            .outerjoin(top_score, top_score.c.question_version_id == QuestionVersion.id),
            Question.tenant_id,
        ),
        "publications": scoped(
            select(
                QuestionPublication.tenant_id,
                QuestionPublication.exam_code,
                QuestionPublication.question_id,
                QuestionPublication.question_version_id,
                QuestionPublication.published_at,
            ),
            QuestionPublication.tenant_id,
        ),
        "blueprint_targets": scoped(
            select(
                BlueprintTarget.tenant_id,
                BlueprintTarget.exam_code,
                BlueprintTarget.topic_id,
                BlueprintTarget.difficulty_label,
                BlueprintTarget.target_items,
            ),
            BlueprintTarget.tenant_id,
        ),
        # selector is JSON; its rule and source become two columns below (see _rows)
        "quiz_sessions": scoped(
            select(
                quiz.id,
                quiz.tenant_id,
                quiz.exam_code,
                quiz.user_id,
                quiz.mode,
                quiz.adaptive,
                quiz.status,
                quiz.selector,
                quiz.n_served,
                quiz.n_answered,
                quiz.n_correct,
                quiz.theta,
                quiz.se,
                quiz.created_at,
                quiz.finished_at,
            ),
            quiz.tenant_id,
        ),
        "quiz_items": scoped(
            select(
                QuizItem.quiz_id,
                QuizItem.position,
                QuizItem.question_id,
                QuizItem.question_version_id,
                QuizItem.served_at,
            ).join(quiz, quiz.id == QuizItem.quiz_id),
            quiz.tenant_id,
        ),
        "responses": scoped(
            select(
                UserResponse.id,
                UserResponse.tenant_id,
                UserResponse.quiz_id,
                UserResponse.position,
                UserResponse.user_id,
                UserResponse.question_id,
                UserResponse.question_version_id,
                UserResponse.is_correct,
                UserResponse.score,
                UserResponse.time_taken_ms,
                UserResponse.theta_after,
                UserResponse.se_after,
                UserResponse.created_at,
            ),
            UserResponse.tenant_id,
        ),
    }


def _rows(name: str, rows) -> list[tuple]:
    if name != "quiz_sessions":
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        values = dict(row._mapping)
        selector = values.pop("selector")
        selector = selector if isinstance(selector, dict) else {}
        values = list(values.values())
        # the view reads the same two keys, with the same fallback
        values[7:7] = [selector.get("rule") or "unknown", selector.get("source") or "unknown"]
        out.append(tuple(values))
    return out


def _write(path: Path, rows: list[tuple], schema: pa.Schema) -> None:
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    table = pa.table(
        [pa.array(list(values), type=field.type) for values, field in zip(columns, schema)], schema=schema
    )
    pq.write_table(table, path)


def _view_schema(view) -> pa.Schema:
    types = {BigInteger: pa.int64(), Float: pa.float64(), String: pa.string(), Date: pa.date32()}
    return pa.schema(
        [(c.name, next(t for k, t in types.items() if isinstance(c.type, k))) for c in view.columns]
    )


def _check_migrated(connection: Connection, url: str) -> str:
    """The database's Alembic revision; raises when the analytics views are absent."""
    present = set(inspect(connection).get_view_names())
    missing = sorted(set(ANALYTICS_VIEWS) - present)
    if missing:
        raise ExportError(
            f"{_redact(url)} has no analytics views {missing}: migrate it first "
            "(`qbank serve` and `qbank load-demo` migrate to the newest revision)"
        )
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def export_snapshot(url: str, out, *, tenant_id: str | None = None, include_views: bool = True) -> dict:
    """Write the analytics snapshot of the database at ``url`` to the folder ``out``.

    Parameters
    ----------
    url : str
        SQLAlchemy URL of a migrated service database (SQLite or PostgreSQL).
    out : path-like
        Folder for ``manifest.json``, ``facts/*.parquet`` and ``views/*.parquet``; created if needed.
    tenant_id : str, optional
        Export one tenant's rows only (default: every tenant, each row keeps its ``tenant_id``).
    include_views : bool
        Also write the database's analytics views (``views/<name>.parquet`` without the
        ``analytics_`` prefix), so a report can check its DuckDB results against them.

    Returns
    -------
    dict
        The manifest: schema, created_at, database (password hidden), backend, alembic_revision,
        tenant_id and the row count of every file written.

    Raises
    ------
    ExportError
        When the database cannot be reached or lacks the analytics migration.
    """
    parsed = make_url(url)
    if (
        parsed.get_backend_name() == "sqlite"
        and parsed.database not in (None, "", ":memory:")
        and not Path(parsed.database).expanduser().is_file()
    ):
        # connecting would create an empty database file
        raise ExportError(f"{_redact(url)}: no such SQLite file {parsed.database}")
    out = Path(out)
    (out / "facts").mkdir(parents=True, exist_ok=True)
    # written last: a folder whose export failed half-way has no manifest and is refused
    (out / "manifest.json").unlink(missing_ok=True)
    engine = make_engine(url, pool_size=1)
    rows_written: dict[str, int] = {}
    try:
        # One read transaction: on PostgreSQL REPEATABLE READ gives every file the same snapshot.
        connection_options = (
            {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
        )
        with engine.connect().execution_options(**connection_options) as connection, connection.begin():
            revision = _check_migrated(connection, url)
            for name, query in _fact_queries(tenant_id).items():
                rows = _rows(name, connection.execute(query))
                _write(out / "facts" / f"{name}.parquet", rows, FACT_SCHEMAS[name])
                rows_written[f"facts/{name}"] = len(rows)
            if tenant_id is not None and not any(rows_written.values()):
                tenants = sorted(
                    set(connection.scalars(select(Topic.tenant_id).distinct()))
                    | set(connection.scalars(select(QuizSession.tenant_id).distinct()))
                )
                raise ExportError(f"--tenant: no rows for tenant {tenant_id!r} (tenants present: {tenants})")
            for view_name in ANALYTICS_VIEWS:  # a view file from an earlier export would be stale
                (out / "views" / f"{view_name.removeprefix('analytics_')}.parquet").unlink(missing_ok=True)
            if include_views:
                (out / "views").mkdir(exist_ok=True)
                for view_name, view in ANALYTICS_VIEWS.items():
                    query = select(view)
                    if tenant_id is not None:
                        query = query.where(view.c.tenant_id == tenant_id)
                    rows = [tuple(r) for r in connection.execute(query)]
                    short = view_name.removeprefix("analytics_")
                    _write(out / "views" / f"{short}.parquet", rows, _view_schema(view))
                    rows_written[f"views/{short}"] = len(rows)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise ExportError(f"cannot export {_redact(url)}: {type(reason).__name__}: {reason}") from None
    finally:
        engine.dispose()
    manifest = {
        "schema": SNAPSHOT_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": _redact(url),
        "backend": engine.dialect.name,
        "alembic_revision": revision,
        "tenant_id": tenant_id,
        "rows": rows_written,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def set_blueprint_targets(session: Session, tenant_id: str, targets: pd.DataFrame, actor: str) -> int:
    """Replace the blueprint targets of every exam named in ``targets``; commits.

    Parameters
    ----------
    targets : DataFrame
        Columns ``exam_code``, ``topic`` (a topic name of the tenant, or its numeric id),
        ``difficulty_label`` and ``target_items`` (an integer >= 0), one row per cell.

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    ExportError
        Naming the rows (1-based, as in a CSV file without its header) of an unknown topic, a
        bad count, a missing value or a duplicate cell; nothing is written then.
    """
    missing = [c for c in TARGET_COLUMNS if c not in targets.columns]
    if missing:
        raise ExportError(f"blueprint targets: missing columns {missing}; expected {list(TARGET_COLUMNS)}")
    frame = targets[list(TARGET_COLUMNS)].reset_index(drop=True)
    rows = frame.index + 1
    empty = frame.isna().any(axis=1) | (frame.astype(str).apply(lambda c: c.str.strip()) == "").any(axis=1)
    if empty.any():
        raise ExportError(f"blueprint targets: empty values in rows {rows[empty].tolist()}")
    for column, limit in (("exam_code", 64), ("difficulty_label", 16)):
        long = frame[column].astype(str).str.strip().str.len() > limit
        if long.any():
            raise ExportError(
                f"blueprint targets: {column} longer than {limit} characters in rows {rows[long].tolist()}"
            )
    counts = pd.to_numeric(frame["target_items"], errors="coerce")
    bad = counts.isna() | (counts < 0) | (counts != counts.round())
    if bad.any():
        raise ExportError(
            f"blueprint targets: target_items must be an integer >= 0; bad rows {rows[bad].tolist()}"
        )
    topics = session.execute(select(Topic.id, Topic.name).where(Topic.tenant_id == tenant_id)).all()
    by_name = {name: tid for tid, name in topics}
    by_id = {str(tid): tid for tid, _ in topics}
    topic_ids = [by_name.get(str(t).strip(), by_id.get(str(t).strip())) for t in frame["topic"]]
    unknown = [int(r) for r, tid in zip(rows, topic_ids) if tid is None]
    if unknown:
        raise ExportError(
            f"blueprint targets: unknown topic in rows {unknown} (tenant {tenant_id!r} has {sorted(by_name)})"
        )
    cells = pd.DataFrame(
        {
            "exam_code": frame["exam_code"].astype(str).str.strip(),
            "topic_id": topic_ids,
            "difficulty_label": frame["difficulty_label"].astype(str).str.strip(),
        }
    )
    duplicated = cells.duplicated(keep=False)
    if duplicated.any():
        raise ExportError(
            f"blueprint targets: the same exam, topic and difficulty in rows {rows[duplicated].tolist()}"
        )
    exams = sorted(set(cells["exam_code"]))
    session.execute(
        delete(BlueprintTarget).where(
            BlueprintTarget.tenant_id == tenant_id, BlueprintTarget.exam_code.in_(exams)
        )
    )
    session.add_all(
        BlueprintTarget(
            tenant_id=tenant_id,
            exam_code=e,
            topic_id=int(t),
            difficulty_label=d,
            target_items=int(n),
            updated_by=actor,
        )
        for e, t, d, n in zip(cells["exam_code"], cells["topic_id"], cells["difficulty_label"], counts)
    )
    session.commit()
    return len(cells)
