"""What one answer + next pair costs the service, in-process (no HTTP client on the same cores):
SQL statements per pair and service CPU ms per pair, on SQLite and PostgreSQL. The robust figures
for the throughput work of issue 15 (wall-clock throughput on this shared machine is noisy).

    python benchmarks/bench_pair_cost.py            # 20 students x 20 items per database
    python benchmarks/bench_pair_cost.py --pools dichotomous,mixed --repeats 2

``--pools``: ``dichotomous`` is the demo bank as it ships (600 3PL items); ``mixed`` is the same
bank with a third of its items (200, every third question) scored in 4 ordered categories, half
GRM and half GPCM (issue 18): option scores 0..3 with the key at 3, thresholds the item's ``b``
plus centred N(0, 1) offsets (sorted for the GRM), ``c = 0``. The pools run interleaved, each on
a fresh database, ``--repeats`` times; the ratio of CPU per pair is taken within one run.
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

import numpy as np
from fastapi.testclient import TestClient
from live_load import SECRET, TENANT, load_bank
from sqlalchemy import event, select, update

from service.core.config import Settings
from service.core.security import create_token
from service.db import make_engine
from service.main import create_app
from service.models import ItemCalibration, QuestionOption, QuestionPublication

POOLS = ("dichotomous", "mixed")


def make_mixed(url: str, labels: dict, seed: int = 18) -> dict:
    """Turn every third live item of the loaded demo bank into a 4-category GRM or GPCM item
    (alternately); returns the labels to answer with per question id, in the order of the score
    they earn (3, 0, 1, 2 for the scored items: key, then partial credit)."""
    rng = np.random.default_rng(seed)
    engine = make_engine(url, pool_size=1)
    answer_labels = {qid: list(pair) for qid, pair in labels.items()}
    with engine.begin() as conn:
        rows = conn.execute(
            select(QuestionPublication.question_id, QuestionPublication.question_version_id).order_by(
                QuestionPublication.question_id
            )
        ).all()
        for k, (qid, vid) in enumerate(rows[::3]):
            model = "GRM" if k % 2 == 0 else "GPCM"
            options = conn.execute(
                select(QuestionOption.id, QuestionOption.option_label, QuestionOption.is_correct)
                .where(QuestionOption.question_version_id == vid)
                .order_by(QuestionOption.option_label)
            ).all()
            wrong = [o for o in options if not o.is_correct]
            by_score = [next(o for o in options if o.is_correct), *wrong]
            for score, option in zip((3, 0, 1, 2), by_score):
                conn.execute(update(QuestionOption).where(QuestionOption.id == option.id).values(score=score))
            answer_labels[qid] = [o.option_label for o in by_score]
            b = conn.execute(
                select(ItemCalibration.b).where(
                    ItemCalibration.question_version_id == vid, ItemCalibration.is_current
                )
            ).scalar_one()
            offsets = rng.normal(0.0, 1.0, 3)
            offsets = np.sort(offsets) if model == "GRM" else offsets
            steps = (b + offsets - offsets.mean()).tolist()
            conn.execute(
                update(ItemCalibration)
                .where(ItemCalibration.question_version_id == vid, ItemCalibration.is_current)
                .values(model=model, c=0.0, b=float(np.mean(steps)), thresholds=steps)
            )
    engine.dispose()
    return answer_labels


PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def core_cost(url: str, students: int, length: int) -> float:
    """CPU ms per pair of the core's part alone: one selection step and one EAP estimate on the
    exam's live pool (maximum information, as the service without a bundle), the simulated
    students answering as in :func:`measure`; far less noisy on a shared machine than the pair."""
    from qbank.pool import ItemPool
    from qbank.rules import rules_from_settings
    from qbank.stopping import FixedLength
    from service.db import make_session_factory
    from service.exposure.checks import _live_items, add_categories, live_categories

    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        live = _live_items(session, TENANT, "DEMO-EXAM")
    engine.dispose()
    frame = live[["ref", "a", "b", "c", "D"]].rename(columns={"ref": "item_id"})
    add_categories(frame, *live_categories(live))
    pool = ItemPool.from_frame(frame)
    top = pool.n_categories - 1
    rules = rules_from_settings("max_info", stopping=FixedLength(length))
    cpu, pairs = 0.0, 0
    for _ in range(students):
        theta = float(rules.first_estimate()[0][0])
        available = np.ones(pool.n_items, dtype=bool)
        served, responses = [], []
        for position in range(length):
            c0 = time.process_time()
            index = int(rules.select(pool, theta, available, position, None, None).item[0])
            available[index] = False
            served.append(index)
            # the bench's students: key, then the other options in turn (scores 3, 0, 1, 2 or 1, 0)
            responses.append((3, 0, 1, 2)[position % 4] if top[index] == 3 else 1 - position % 2)
            theta, _ = rules.estimate(pool, served, responses)
            cpu += time.process_time() - c0
            pairs += 1
    return 1000 * cpu / pairs


def measure(url: str, students: int, length: int, pool: str = "dichotomous") -> dict:
    labels = {qid: list(pair) for qid, pair in load_bank(url).items()}
    if pool == "mixed":
        labels = make_mixed(url, labels)
    app = create_app(Settings(database_url=url, env="test", secret_key=SECRET))
    statements = [0]
    event.listen(
        app.state.engine,
        "before_cursor_execute",
        lambda *a, **k: statements.__setitem__(0, statements[0] + 1),
    )
    pairs, cpu, wall, scored_answers = 0, 0.0, 0.0, 0
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
                choices = labels[item["question_id"]]
                scored_answers += len(choices) > 2
                # the dichotomous items alternate key and a wrong option, as before issue 18
                body = {"question_id": item["question_id"], "selected": choices[position % len(choices)]}
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
    core = core_cost(url, students, length)
    return {
        "pairs": pairs,
        "statements_per_pair": per_pair,
        "cpu_ms_per_pair": 1000 * cpu / pairs,
        "wall_ms_per_pair": 1000 * wall / pairs,
        "polytomous_share": scored_answers / pairs,
        "core_ms_per_pair": core,
    }


def _fresh_databases(tmp: Path, tag: str):
    import psycopg

    name = f"qbank_pair_{secrets.token_hex(4)}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, (
        ("SQLite", f"sqlite:///{tmp / f'pair-{tag}.db'}"),
        ("PostgreSQL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--pools", default="dichotomous", help=f"comma-separated, of {list(POOLS)}")
    parser.add_argument("--repeats", type=int, default=1)
    args, _ = parser.parse_known_args(argv)
    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    unknown = sorted(set(pools) - set(POOLS))
    if unknown or not pools:
        parser.error(f"--pools: unknown {unknown}; choose from {list(POOLS)}")
    import psycopg

    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for pool in pools:
                name, urls = _fresh_databases(Path(tmp), f"{pool}-{repeat}")
                try:
                    for label, url in urls:
                        r = measure(url, args.students, args.length, pool)
                        results.setdefault((label, pool), []).append(r)
                        print(
                            f"{label:<11} {pool:<12} {r['pairs']} pairs ({100 * r['polytomous_share']:.0f} % "
                            f"on GRM/GPCM items): {r['statements_per_pair']} statements per pair, "
                            f"{r['cpu_ms_per_pair']:.1f} ms CPU per pair (client included), "
                            f"{r['wall_ms_per_pair']:.1f} ms wall; core (select + estimate) "
                            f"{r['core_ms_per_pair']:.2f} ms",
                            flush=True,
                        )
                finally:
                    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if len(pools) > 1:
        print("medians over repeats; CPU ratio to the first pool:")
        for label in ("SQLite", "PostgreSQL"):
            base = float(np.median([r["cpu_ms_per_pair"] for r in results[(label, pools[0])]]))
            for pool in pools:
                cpu = float(np.median([r["cpu_ms_per_pair"] for r in results[(label, pool)]]))
                statements = sorted({r["statements_per_pair"] for r in results[(label, pool)]})
                core = float(np.median([r["core_ms_per_pair"] for r in results[(label, pool)]]))
                print(
                    f"{label:<11} {pool:<12} {cpu:.1f} ms CPU per pair, statements {statements}, "
                    f"ratio {cpu / base:.2f}; core {core:.2f} ms"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
