"""What one answer + next pair costs the service, in-process (no HTTP client on the same cores):
SQL statements per pair and service CPU ms per pair, on SQLite and PostgreSQL. The robust figures
for the throughput work of issue 15 (wall-clock throughput on this shared machine is noisy).

    python benchmarks/bench_pair_cost.py            # 20 students x 20 items per database
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "service")]

from fastapi.testclient import TestClient
from live_load import SECRET, TENANT, load_bank
from sqlalchemy import event

from service.core.config import Settings
from service.core.security import create_token
from service.main import create_app

PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def measure(url: str, students: int, length: int) -> dict:
    labels = load_bank(url)
    app = create_app(Settings(database_url=url, env="test", secret_key=SECRET))
    statements = [0]
    event.listen(
        app.state.engine,
        "before_cursor_execute",
        lambda *a, **k: statements.__setitem__(0, statements[0] + 1),
    )
    pairs, cpu, wall = 0, 0.0, 0.0
    with TestClient(app) as client:
        for s in range(students):
            token = create_token(f"s{s}", ["student"], TENANT, secret=SECRET, ttl_minutes=60)
            headers = {"Authorization": f"Bearer {token}"}
            quiz = client.post(
                "/v1/quizzes", json={"filters": {"num_questions": length}}, headers=headers
            ).json()
            item = client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=headers).json()
            for position in range(length - 1):
                before, c0, w0 = statements[0], time.process_time(), time.perf_counter()
                body = {
                    "question_id": item["question_id"],
                    "selected": labels[item["question_id"]][position % 2],
                }
                assert (
                    client.post(
                        f"/v1/quizzes/{quiz['quiz_id']}/answers", json=body, headers=headers
                    ).status_code
                    == 200
                )
                item = client.get(f"/v1/quizzes/{quiz['quiz_id']}/next", headers=headers).json()
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                pairs += 1
                if position == 0:
                    per_pair = statements[0] - before
    app.state.engine.dispose()
    return {
        "pairs": pairs,
        "statements_per_pair": per_pair,
        "cpu_ms_per_pair": 1000 * cpu / pairs,
        "wall_ms_per_pair": 1000 * wall / pairs,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--length", type=int, default=20)
    args, _ = parser.parse_known_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        import psycopg

        name = f"qbank_pair_{secrets.token_hex(4)}"
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            for label, url in (
                ("SQLite", f"sqlite:///{Path(tmp) / 'pair.db'}"),
                ("PostgreSQL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"),
            ):
                r = measure(url, args.students, args.length)
                print(
                    f"{label:<11} {r['pairs']} pairs: {r['statements_per_pair']} statements per pair, "
                    f"{r['cpu_ms_per_pair']:.1f} ms CPU per pair (client included), {r['wall_ms_per_pair']:.1f} ms wall"
                )
        finally:
            with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
