"""Outbox relay throughput: events per second ``qbank relay`` ships from the database to NATS
JetStream (the shared server on 127.0.0.1:4222, into a stream of this run only), on PostgreSQL
and on SQLite.

An outbox of ``--events`` answer-sized events over ``--quizzes`` quizzes is drained by one relay
(``Relay.drain``: claim, publish with a quiz's next event sent after the previous one's ack,
mark), timed in wall and CPU seconds. Peer in the same run: the same broker adapter publishing
the same events in the same batches with no database (the ceiling the database work is measured
against). Each run checks that every event reached the stream exactly once.

    python benchmarks/bench_relay.py                         # 20,000 events, both databases
    python benchmarks/bench_relay.py --events 50000 --backends postgresql --batch-size 1000

For the lag under service load: ``python benchmarks/bench_service_load.py --relay nats://127.0.0.1:4222``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert

from service.db import make_engine, migrate
from service.models import OutboxEvent
from service.relay.brokers import NatsBroker
from service.relay.envelope import OutboxMessage
from service.relay.relay import Relay

PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
TENANT = "00000000-0000-0000-0000-000000000001"


def _payload(quiz: str, position: int) -> dict:
    """An answer_submitted payload of the service's size (about 400 bytes of JSON)."""
    return {
        "quiz_id": quiz,
        "position": position,
        "question_id": 1000 + position,
        "version": 1,
        "question_version_id": 2000 + position,
        "calibration_id": 3000 + position,
        "selected": "B",
        "is_correct": position % 3 != 0,
        "time_taken_ms": 1200,
        "theta_before": 0.1 * position,
        "se_before": 1.0 / (1 + position),
        "theta_after": 0.1 * position + 0.05,
        "se_after": 1.0 / (2 + position),
    }


def _rows(n_events: int, n_quizzes: int) -> list[dict]:
    now = datetime.now(UTC)
    rows = []
    for i in range(n_events):
        quiz = f"bench-quiz-{i % n_quizzes}"
        rows.append(
            {
                "event_id": f"{secrets.token_hex(16)}",
                "tenant_id": TENANT,
                "event_type": "answer_submitted",
                "aggregate_type": "quiz",
                "aggregate_id": quiz,
                "payload": _payload(quiz, i // n_quizzes),
                "created_at": now,
            }
        )
    return rows


def _database(backend: str, workdir: Path):
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'relay.db'}", lambda: None
    import psycopg

    name = f"qbank_bench_relay_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def cleanup():
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", cleanup


def _stream_count(server: str, stream: str, delete: bool = True) -> tuple[int, int]:
    """(messages, distinct event ids) in ``stream``; deletes it."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    async def run():
        nc = await nats.connect(servers=[server])
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            ids = set()
            sub = await js.pull_subscribe("", stream=stream, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
            got = 0
            while got < info.state.messages:
                for msg in await sub.fetch(1000, timeout=10):
                    ids.add(json.loads(msg.data)["event_id"])
                    got += 1
            if delete:
                await js.delete_stream(stream)
            return info.state.messages, len(ids)
        finally:
            await nc.close()

    return asyncio.run(run())


def _broker(server: str) -> tuple[NatsBroker, str]:
    tag = secrets.token_hex(4)
    stream = f"QBANK_BENCH_{tag.upper()}"
    return NatsBroker(f"{server}?stream={stream}&subject=bench{tag}.events"), stream


def run_relay(backend: str, rows: list[dict], args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url, cleanup = _database(backend, Path(tmp))
        try:
            migrate(url)
            engine = make_engine(url, pool_size=1)
            with engine.begin() as connection:
                for start in range(0, len(rows), 5000):
                    connection.execute(insert(OutboxEvent), rows[start : start + 5000])
            broker, stream = _broker(args.nats)
            relay = Relay(engine, broker, batch_size=args.batch_size)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            sent = relay.drain()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            engine.dispose()
        finally:
            cleanup()
    messages, distinct = _stream_count(args.nats, stream)
    return {
        "run": f"relay on {backend}",
        "events": len(rows),
        "sent": sent,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": sent / wall,
        "on_stream": messages,
        "distinct": distinct,
    }


def run_broker_only(rows: list[dict], args) -> dict:
    """The peer: the same publishes in the same batches, no database."""
    broker, stream = _broker(args.nats)
    broker.connect()
    messages = [OutboxMessage(i + 1, **row) for i, row in enumerate(rows)]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    acked = 0
    for start in range(0, len(messages), args.batch_size):
        acked += len(broker.publish(messages[start : start + args.batch_size]).acked)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    broker.close()
    on_stream, distinct = _stream_count(args.nats, stream)
    return {
        "run": "broker only (no database)",
        "events": len(rows),
        "sent": acked,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": acked / wall,
        "on_stream": on_stream,
        "distinct": distinct,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--quizzes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--backends", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"]
    )
    parser.add_argument("--nats", default="nats://127.0.0.1:4222")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _unknown = parser.parse_known_args(argv)

    load = os.getloadavg()[0]
    rows = _rows(args.events, args.quizzes)
    results = [run_broker_only(rows, args)] + [run_relay(b, rows, args) for b in args.backends]
    print(
        f"\nOutbox relay: {args.events} events over {args.quizzes} quizzes, batches of {args.batch_size}, "
        f"NATS JetStream on this machine ({os.cpu_count()} cores, load average {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f})"
    )
    print(f"{'run':<28}{'events/s':>10}{'wall s':>8}{'CPU s':>7}{'on stream':>11}{'distinct':>10}  x peer")
    peer = results[0]["events_per_s"]
    failed = False
    for r in results:
        ok = r["sent"] == r["events"] == r["on_stream"] == r["distinct"]
        failed |= not ok
        print(
            f"{r['run']:<28}{r['events_per_s']:>10.0f}{r['wall_s']:>8.2f}{r['cpu_s']:>7.2f}"
            f"{r['on_stream']:>11}{r['distinct']:>10}  {r['events_per_s'] / peer:.2f}"
            f"{'' if ok else '  MISSING OR DUPLICATED'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
