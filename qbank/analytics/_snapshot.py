"""The analytics snapshot: a folder of Parquet files that the service exports and DuckDB reads.

Layout (written by ``qbank analytics export``)::

    manifest.json          schema, creation time, source database (password hidden), row counts
    facts/<table>.parquet  the rows the analyses start from, one file per entry of FACT_SCHEMAS
    views/<view>.parquet   the service database's analytics views as they were (optional)

The fact tables are the contract between the delivery service and this package: the service
writes exactly these columns and types, and :func:`open_snapshot` refuses a folder that lacks
any of them. Timestamps are UTC. No item content (stems, options, keys) is part of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FACT_SCHEMAS", "SNAPSHOT_SCHEMA", "SnapshotError", "open_snapshot", "read_manifest"]

# /2 (issue 18): responses carry ``score`` and question versions ``max_score`` (partial credit)
SNAPSHOT_SCHEMA = "qbank.analytics-snapshot/2"

_UTC = pa.timestamp("us", tz="UTC")

FACT_SCHEMAS: dict[str, pa.Schema] = {
    "topics": pa.schema(
        [
            ("tenant_id", pa.string()),
            ("topic_id", pa.int64()),
            ("topic_name", pa.string()),
            ("blueprint_code", pa.string()),
        ]
    ),
    "questions": pa.schema(
        [
            ("tenant_id", pa.string()),
            ("question_id", pa.int64()),
            ("external_ref", pa.string()),
            ("is_deleted", pa.bool_()),
        ]
    ),
    "question_versions": pa.schema(
        [
            ("question_version_id", pa.int64()),
            ("question_id", pa.int64()),
            ("version", pa.int64()),
            ("state", pa.string()),
            ("topic_id", pa.int64()),
            ("difficulty_label", pa.string()),
            # full credit, m - 1 for m score categories (1 for a 0/1 item): the top option score
            ("max_score", pa.int64()),
        ]
    ),
    "publications": pa.schema(
        [
            ("tenant_id", pa.string()),
            ("exam_code", pa.string()),
            ("question_id", pa.int64()),
            ("question_version_id", pa.int64()),
            ("published_at", _UTC),
        ]
    ),
    "blueprint_targets": pa.schema(
        [
            ("tenant_id", pa.string()),
            ("exam_code", pa.string()),
            ("topic_id", pa.int64()),
            ("difficulty_label", pa.string()),
            ("target_items", pa.int64()),
        ]
    ),
    "quiz_sessions": pa.schema(
        [
            ("quiz_id", pa.string()),
            ("tenant_id", pa.string()),
            ("exam_code", pa.string()),
            ("user_id", pa.string()),
            ("mode", pa.string()),
            ("adaptive", pa.bool_()),
            ("status", pa.string()),
            ("selector_rule", pa.string()),
            ("assignment", pa.string()),
            ("n_served", pa.int64()),
            ("n_answered", pa.int64()),
            ("n_correct", pa.int64()),
            ("theta", pa.float64()),
            ("se", pa.float64()),
            ("created_at", _UTC),
            ("finished_at", _UTC),
        ]
    ),
    "quiz_items": pa.schema(
        [
            ("quiz_id", pa.string()),
            ("position", pa.int64()),
            ("question_id", pa.int64()),
            ("question_version_id", pa.int64()),
            ("served_at", _UTC),
        ]
    ),
    "responses": pa.schema(
        [
            ("response_id", pa.int64()),
            ("tenant_id", pa.string()),
            ("quiz_id", pa.string()),
            ("position", pa.int64()),
            ("user_id", pa.string()),
            ("question_id", pa.int64()),
            ("question_version_id", pa.int64()),
            ("is_correct", pa.bool_()),  # full credit
            ("score", pa.int64()),  # the credit earned, 0 .. max_score of the version
            ("time_taken_ms", pa.int64()),
            ("theta_after", pa.float64()),
            ("se_after", pa.float64()),
            ("created_at", _UTC),
        ]
    ),
}


class SnapshotError(ValueError):
    """A snapshot folder that is missing, incomplete or of another schema."""


def read_manifest(folder) -> dict:
    """The ``manifest.json`` of a snapshot folder, checked for the schema this package reads."""
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SnapshotError(
            f"{folder} is not an analytics snapshot: {path.name} is missing "
            "(write one with `qbank analytics export`)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: cannot read the manifest: {exc}") from None
    if manifest.get("schema") != SNAPSHOT_SCHEMA:
        raise SnapshotError(f"{path}: schema is {manifest.get('schema')!r}, expected {SNAPSHOT_SCHEMA!r}")
    return manifest


def _check_columns(path: Path, expected: pa.Schema) -> None:
    try:
        found = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise SnapshotError(f"{path}: not a readable Parquet file: {exc}") from None
    missing = [
        f"{field.name} ({field.type})"
        for field in expected
        if field.name not in found.names or not found.field(field.name).type.equals(field.type)
    ]
    if missing:
        raise SnapshotError(f"{path}: missing or mistyped columns {missing}")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def open_snapshot(folder) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per fact table of the snapshot in ``folder``.

    The connection's time zone is UTC, so ``CAST(timestamp AS DATE)`` is the UTC day, as in
    the service's views.

    Raises
    ------
    SnapshotError
        When the folder has no manifest of this schema, or a fact file is missing or lacks a
        column (the message names the file and the columns).
    """
    folder = Path(folder)
    read_manifest(folder)
    paths = {name: folder / "facts" / f"{name}.parquet" for name in FACT_SCHEMAS}
    absent = sorted(str(p) for p in paths.values() if not p.is_file())
    if absent:
        raise SnapshotError(f"{folder}: incomplete snapshot, missing {absent}")
    for name, path in paths.items():
        _check_columns(path, FACT_SCHEMAS[name])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, path in paths.items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({_quote(path)})")
    return con
