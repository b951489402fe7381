"""An analytics snapshot built from the event stream instead of the database.

``qbank relay`` publishes every outbox event (envelope: ``event_id``, ``event_type``,
``timestamp``, ``tenant_id``, ``aggregate_type``, ``aggregate_id`` plus the payload) to NATS
JetStream. :func:`read_nats_stream` reads a stream from its start; :func:`write_stream_snapshot`
turns the quiz events into the ``quiz_sessions``, ``quiz_items`` and ``responses`` facts of a
snapshot, so the analyses run with no access to the service database.

The catalogue facts (topics, questions, versions, publications, blueprint targets) are not
events: they come from a catalogue snapshot (any snapshot written by ``qbank analytics export``;
authors change them rarely, so an occasional export suffices).

Differences from a database export: a quiz that expired unanswered stays ``active`` (expiry is
not an event), ``response_id`` is the answer's rank in the stream, and times are the events'
(written in the same transaction as the rows, a few microseconds apart).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ._snapshot import FACT_SCHEMAS, SNAPSHOT_SCHEMA, SnapshotError, read_manifest

__all__ = ["CATALOG_FACTS", "STREAM_FACTS", "facts_from_events", "read_nats_stream", "write_stream_snapshot"]

STREAM_FACTS = ("quiz_sessions", "quiz_items", "responses")
CATALOG_FACTS = tuple(name for name in FACT_SCHEMAS if name not in STREAM_FACTS)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).astimezone(UTC)


def facts_from_events(events: Iterable[dict]) -> dict[str, pa.Table]:
    """The three quiz facts from envelopes in stream order; a repeated ``event_id`` (delivery is
    at least once) counts once."""
    seen: set[str] = set()
    quizzes: dict[str, dict] = {}
    items, responses = [], []
    for event in events:
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        kind, quiz_id = event["event_type"], event.get("quiz_id")
        if kind == "quiz_started":
            selector = event.get("selector") if isinstance(event.get("selector"), dict) else {}
            quizzes[quiz_id] = {
                "quiz_id": quiz_id,
                "tenant_id": event["tenant_id"],
                "exam_code": event.get("exam_code"),
                "user_id": event.get("user_id"),
                "mode": event.get("mode"),
                "adaptive": event.get("adaptive"),
                "status": "active",
                "selector_rule": selector.get("rule") or "unknown",
                "assignment": selector.get("source") or "unknown",
                "n_served": 0,
                "n_answered": 0,
                "n_correct": 0,
                "theta": event.get("theta"),
                "se": event.get("se"),
                "created_at": _time(event["timestamp"]),
                "finished_at": None,
            }
            continue
        quiz = quizzes.get(quiz_id)
        if quiz is None:  # quiz events before its start (a stream trimmed at its head): skipped
            continue
        if kind == "question_served":
            quiz["n_served"] += 1
            items.append(
                {
                    "quiz_id": quiz_id,
                    "position": event["position"],
                    "question_id": event["question_id"],
                    "question_version_id": event["question_version_id"],
                    "served_at": _time(event["timestamp"]),
                }
            )
        elif kind == "answer_submitted":
            quiz["n_answered"] += 1
            quiz["n_correct"] += int(bool(event["is_correct"]))
            quiz["theta"], quiz["se"] = event["theta_after"], event["se_after"]
            responses.append(
                {
                    "response_id": len(responses) + 1,
                    "tenant_id": event["tenant_id"],
                    "quiz_id": quiz_id,
                    "position": event["position"],
                    "user_id": quiz["user_id"],
                    "question_id": event["question_id"],
                    "question_version_id": event["question_version_id"],
                    "is_correct": bool(event["is_correct"]),
                    # events from before issue 18 carry no score: full credit is 1, else 0
                    "score": int(event.get("score", int(bool(event["is_correct"])))),
                    "time_taken_ms": event.get("time_taken_ms"),
                    "theta_after": event["theta_after"],
                    "se_after": event["se_after"],
                    "created_at": _time(event["timestamp"]),
                }
            )
        elif kind == "quiz_finished":
            quiz["status"] = "finished"
            quiz["finished_at"] = _time(event["timestamp"])
            quiz["theta"], quiz["se"] = event.get("theta", quiz["theta"]), event.get("se", quiz["se"])
    rows = {"quiz_sessions": list(quizzes.values()), "quiz_items": items, "responses": responses}
    return {name: pa.Table.from_pylist(rows[name], schema=FACT_SCHEMAS[name]) for name in STREAM_FACTS}


def write_stream_snapshot(events: Iterable[dict], catalog, out, *, source: str) -> dict:
    """Write a snapshot folder ``out`` from stream events and a catalogue snapshot.

    Parameters
    ----------
    events : iterable of dict
        Event envelopes in stream order (duplicates allowed).
    catalog : path-like
        A snapshot folder whose catalogue facts (:data:`CATALOG_FACTS`) are copied.
    source : str
        Where the events came from, recorded in the manifest.

    Returns
    -------
    dict
        The manifest (row counts per fact file).

    Raises
    ------
    SnapshotError
        When ``catalog`` is not a snapshot or lacks a catalogue fact.
    """
    catalog, out = Path(catalog), Path(out)
    read_manifest(catalog)
    missing = [n for n in CATALOG_FACTS if not (catalog / "facts" / f"{n}.parquet").is_file()]
    if missing:
        raise SnapshotError(f"{catalog}: the catalogue snapshot lacks facts {missing}")
    (out / "facts").mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # written last, as by the database export
    shutil.rmtree(out / "views", ignore_errors=True)  # views of a database export would not match
    rows = {}
    for name in CATALOG_FACTS:
        shutil.copyfile(catalog / "facts" / f"{name}.parquet", out / "facts" / f"{name}.parquet")
        rows[f"facts/{name}"] = pq.read_metadata(out / "facts" / f"{name}.parquet").num_rows
    for name, table in facts_from_events(events).items():
        pq.write_table(table, out / "facts" / f"{name}.parquet")
        rows[f"facts/{name}"] = table.num_rows
    manifest = {
        "schema": SNAPSHOT_SCHEMA,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": None,
        "source": source,
        "catalog": str(catalog),
        "tenant_id": None,
        "rows": rows,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


async def _read_nats(server: str, stream: str, batch: int) -> list[dict]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    nc = await nats.connect(servers=[server], connect_timeout=5, allow_reconnect=False)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        last = info.state.last_seq
        out: list[dict] = []
        if info.state.messages == 0:
            return out
        subscription = await js.pull_subscribe(
            "",
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        done = False
        while not done:
            for message in await subscription.fetch(batch, timeout=10):
                out.append(json.loads(message.data))
                done = message.metadata.sequence.stream >= last
        await subscription.unsubscribe()
        return out
    finally:
        await nc.close()


def read_nats_stream(url: str, stream: str = "QBANK_EVENTS", batch: int = 1000) -> list[dict]:
    """Every event of a JetStream ``stream`` at ``url`` (``nats://host:port``), from the first
    message to the last one present when the read began, decoded."""
    # in a thread of its own, so a caller with a running event loop (a notebook) can call it too
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _read_nats(url, stream, batch)).result()
