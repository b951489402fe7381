"""The heavy version of tests/service/test_reliability.py (issue 15): many students against a real
server (2 uvicorn workers) on PostgreSQL and SQLite, with duplicate and conflicting answers, a low
daily exposure cap and kill -9 of every server process a third of the way through.

    python benchmarks/bench_reliability.py                          # 200 students, cap 30, both databases
    python benchmarks/bench_reliability.py --students 50 --backends postgresql --no-kill

Prints answers/s, p50/p99 of the answer (+ duplicates) and next pair, retries, 5xx, lost answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "service")]

from live_load import Server, Stats, load_bank, lost_answers, run_students

PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _database(backend: str, workdir: Path):
    if backend == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", lambda: None
    import psycopg

    name = f"qbank_rel_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def run(backend: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url, drop = _database(backend, Path(tmp))
        try:
            labels = load_bank(url)
            server = Server(url, args.workers, Path(tmp) / "server.log", QBANK_MAX_DAILY_EXPOSURES=args.cap)
            server.start()
            stats = Stats()

            async def kill_and_restart():
                while stats.answers < args.students * args.length // 3:
                    await asyncio.sleep(0.05)
                stats.killed_at = stats.answers
                server.kill9()
                await asyncio.to_thread(server.start)

            started = time.perf_counter()
            try:
                asyncio.run(
                    run_students(
                        server.port,
                        args.students,
                        args.length,
                        labels,
                        2026,
                        stats,
                        during=None if args.no_kill else kill_and_restart,
                    )
                )
            finally:
                server.stop()
            wall = time.perf_counter() - started
            log = (Path(tmp) / "server.log").read_text().lower()
            return {
                "backend": backend,
                "answers_per_s": stats.answers / wall,
                "pair_p50_ms": float(np.percentile(stats.pair_ms, 50)),
                "pair_p99_ms": float(np.percentile(stats.pair_ms, 99)),
                "answers": stats.answers,
                "finished": stats.finished,
                "retries": stats.retries,
                "server_errors": len(stats.server_errors),
                "deadlocks": log.count("deadlock"),
                "lost": len(lost_answers(url, stats)),
            }
        finally:
            drop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"]
    )
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--cap", type=int, default=30, help="QBANK_MAX_DAILY_EXPOSURES")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-kill", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    print(
        f"{args.students} students x {args.length} items, cap {args.cap}, {args.workers} workers, "
        f"kill -9: {not args.no_kill}, load average {os.getloadavg()[0]:.1f}"
    )
    failed = False
    for backend in args.backends:
        r = run(backend, args)
        bad = r["server_errors"] or r["deadlocks"] or r["lost"] or r["finished"] != args.students
        failed |= bool(bad)
        print(
            f"{backend:<11} {r['answers_per_s']:6.0f} answers/s  pair p50 {r['pair_p50_ms']:7.1f} ms  "
            f"p99 {r['pair_p99_ms']:8.1f} ms  finished {r['finished']}/{args.students}  retries {r['retries']}  "
            f"5xx {r['server_errors']}  deadlocks {r['deadlocks']}  lost {r['lost']}{'  FAILED' if bad else ''}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
