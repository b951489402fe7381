"""Service load: concurrent students taking adaptive quizzes against a real server on loopback.

Starts ``qbank serve`` (uvicorn) on a fresh PostgreSQL database and, as the peer measured in the
same run, on a fresh embedded SQLite file; loads the 600-item demo bank; then N students (asyncio
+ httpx, one connection each) each start a 30-item adaptive quiz and answer it by the 3PL model
at their own theta ~ N(0, 1). Reports answers per second, p50/p99 latency of each
answer + next pair (the two requests a student waits on between questions) and of each request,
the pair's time inside the service (``in app``, from its ``Server-Timing`` header: what the
client waits beyond it is loopback, HTTP parsing and its own event loop on the same cores),
and counts the answers stored in the database (must equal students x length).

Two pacings per database: ``saturated`` (every student answers the moment the next item
arrives: the server's capacity, latency is mostly queueing) and ``paced`` (a pause before each
answer, uniform on 0.5-1.5 x ``--think-ms``, default 1 s: still far faster than people answer).

    python benchmarks/bench_service_load.py                      # both databases, both pacings
    python benchmarks/bench_service_load.py --backends postgresql --think-ms 1000 --pacings paced

With ``--relay nats://127.0.0.1:4222`` a ``qbank relay`` runs next to the server (issue 17) and
the outbox lag is sampled from /health during the run; the events reaching the stream are counted.

Targets (issue 15, PostgreSQL, ``--workers 2``): saturated at least 300 answers/s; paced (about
1 s think), p99 of answer + next at most 30 ms. The client, the server and PostgreSQL share the
2 cores of the dev machine: the CPU table says what one answer costs each of them, and how many
cores 300 answers/s would take at that cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.core.security import create_token

SECRET = "bench-" + secrets.token_hex(24)
TENANT = "00000000-0000-0000-0000-000000000001"
PG_SERVER = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prepare_database(backend: str, workdir: Path) -> tuple[str, callable]:
    """A fresh database with the demo bank; returns its URL and a cleanup function."""
    from service.db import make_engine, make_session_factory, migrate
    from service.demo import load_demo

    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        cleanup = lambda: None  # noqa: E731 - the temporary folder goes with the run
    else:
        import psycopg

        name = f"qbank_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

        def cleanup():
            with psycopg.connect(PG_SERVER, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    migrate(url)
    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        load_demo(session, TENANT)
    engine.dispose()
    return url, cleanup


def _bank_knowledge(url: str) -> dict:
    """Key, a wrong label and 3PL parameters by question id (what the simulated students know)."""
    import pandas as pd
    from sqlalchemy import select

    from service.db import make_engine, make_session_factory
    from service.models import Question

    bank = {i["item_id"]: i for i in json.loads((ROOT / "data" / "demo_bank.json").read_text())["items"]}
    pool = pd.read_csv(ROOT / "data" / "demo_pool.csv", dtype={"item_id": str}).set_index("item_id")
    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        refs = dict(session.execute(select(Question.id, Question.external_ref)).all())
    engine.dispose()
    out = {}
    for qid, ref in refs.items():
        options = bank[ref]["options"]
        out[qid] = (
            next(o["label"] for o in options if o["is_correct"]),
            next(o["label"] for o in options if not o["is_correct"]),
            *(float(pool.loc[ref, k]) for k in ("a", "b", "c", "D")),
        )
    return out


def _count_answers(url: str) -> int:
    from sqlalchemy import func, select

    from service.db import make_engine, make_session_factory
    from service.models import UserResponse

    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        count = session.scalar(select(func.count()).select_from(UserResponse))
    engine.dispose()
    return int(count)


# ---------------------------------------------------------------------------- CPU accounting
# Where the 2 cores go during a run (Linux /proc): this client, the server's processes (master and
# workers), the PostgreSQL backends serving the run's database, and the whole machine.
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def _cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def _tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _postgres_backends_cpu_s(url: str) -> float:
    """CPU of the PostgreSQL backends connected to the run's database (those still open)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))]
    return sum(_cpu_s(pid) for pid in pids)


def _machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores, every process)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / _TICK


def _start_server(url: str, port: int, workers: int, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "QBANK_ENV": "production", "QBANK_SECRET_KEY": SECRET, "QBANK_DATABASE_URL": url}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbank.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--database-url",
            url,
        ],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {server.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the server did not answer /health within 90 s")


async def _student(
    port: int,
    user: str,
    theta: float,
    length: int,
    knowledge: dict,
    rng: np.random.Generator,
    think_s: float,
    timings: dict,
    pair_calls: int,
) -> None:
    # One keep-alive connection per student, as a browser would hold: a connection shared through
    # a pool can sit idle past the server's keep-alive timeout and be closed under the client.
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=120, limits=httpx.Limits(max_connections=1)
    ) as client:
        await _take_quiz(client, user, theta, length, knowledge, rng, think_s, timings, pair_calls)


def _app_seconds(response: httpx.Response) -> float:
    """The service's own time for a request, from its ``Server-Timing: app;dur=<ms>`` header."""
    return float(response.headers["server-timing"].split("dur=")[1]) / 1000.0


async def _take_quiz(client, user, theta, length, knowledge, rng, think_s, timings, pair_calls) -> None:
    if think_s:  # paced students arrive spread over two think times, not all in the same millisecond
        await asyncio.sleep(rng.uniform(0.0, 2.0 * think_s))
    headers = {
        "Authorization": f"Bearer {create_token(user, ['student'], TENANT, secret=SECRET, ttl_minutes=60)}"
    }
    r = await client.post(
        "/v1/quizzes", headers=headers, json={"filters": {"num_questions": length, "mode": "exam"}}
    )
    r.raise_for_status()
    quiz = r.json()["quiz_id"]
    t0 = time.perf_counter()
    r = await client.get(f"/v1/quizzes/{quiz}/next", headers=headers)
    r.raise_for_status()
    timings["next"].append(time.perf_counter() - t0)
    item = r.json()
    for position in range(length):
        if think_s:
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think_s)
        key, wrong, a, b, c, d = knowledge[item["question_id"]]
        p = c + (1 - c) / (1 + np.exp(-d * a * (theta - b)))
        selected = key if rng.random() < p else wrong
        t0 = time.perf_counter()
        r = await client.post(
            f"/v1/quizzes/{quiz}/answers" + ("?next=true" if pair_calls == 1 else ""),
            headers=headers,
            json={"question_id": item["question_id"], "selected": selected, "time_taken_ms": 0},
        )
        r.raise_for_status()
        t1 = time.perf_counter()
        timings["answer"].append(t1 - t0)
        answer_in_app = _app_seconds(r)
        if position == length - 1:
            assert r.json()["quiz_finished"], r.text
            break
        if pair_calls == 1:  # the answer's response carries the next item
            timings["pair"].append(t1 - t0)
            timings["pair_in_app"].append(answer_in_app)
            item = r.json()["next_item"]
            continue
        r = await client.get(f"/v1/quizzes/{quiz}/next", headers=headers)
        r.raise_for_status()
        t2 = time.perf_counter()
        timings["next"].append(t2 - t1)
        timings["pair"].append(t2 - t0)
        timings["pair_in_app"].append(answer_in_app + _app_seconds(r))
        item = r.json()


async def _sample_lag(port: int, samples: list, stop: asyncio.Event) -> None:
    """The outbox lag from /health every 0.25 s while the students run (--relay)."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        while not stop.is_set():
            outbox = (await client.get("/health")).json()["outbox"]
            samples.append((outbox["backlog"], outbox["oldest_unsent_age_s"] or 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


async def _run_students(
    port: int,
    n_students: int,
    length: int,
    knowledge: dict,
    seed: int,
    think_s: float,
    lag: list | None,
    pair_calls: int,
):
    rng = np.random.default_rng(seed)
    thetas = rng.normal(0.0, 1.0, n_students)
    children = rng.spawn(n_students)
    timings = {"answer": [], "next": [], "pair": [], "pair_in_app": []}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_lag(port, lag, stop)) if lag is not None else None
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _student(
                port, f"student-{i}", thetas[i], length, knowledge, children[i], think_s, timings, pair_calls
            )
            for i in range(n_students)
        )
    )
    wall = time.perf_counter() - start
    if sampler is not None:
        stop.set()
        await sampler
    return wall, {k: np.array(v) * 1000 for k, v in timings.items()}


def _start_relay(url: str, broker: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    """``qbank relay`` next to the server, into a stream of this run only; returns it and the stream."""
    tag = secrets.token_hex(4)
    stream = f"QBANK_BENCH_{tag.upper()}"
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbank.cli.main",
            "relay",
            "--database-url",
            url,
            "--broker",
            f"{broker}?stream={stream}&subject=bench{tag}.events",
        ],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return relay, stream


def _finish_relay(relay: subprocess.Popen, url: str, port: int, broker: str, stream: str) -> dict:
    """Wait for the relay to drain the outbox, stop it, and count what reached the stream."""
    import nats
    from sqlalchemy import func, select

    from service.db import make_engine
    from service.models import OutboxEvent

    start = time.perf_counter()
    while time.perf_counter() - start < 120:
        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()["outbox"]["backlog"] == 0:
            break
        time.sleep(0.1)
    drain_s = time.perf_counter() - start
    relay.terminate()
    relay.communicate(timeout=30)

    async def _count():
        nc = await nats.connect(servers=[broker])
        try:
            js = nc.jetstream()
            messages = (await js.stream_info(stream)).state.messages
            await js.delete_stream(stream)
            return messages
        finally:
            await nc.close()

    engine = make_engine(url, pool_size=1)
    with engine.connect() as connection:
        outbox = connection.scalar(select(func.count()).select_from(OutboxEvent))
    engine.dispose()
    return {
        "drain_after_load_s": drain_s,
        "events_in_outbox": int(outbox),
        "events_on_stream": asyncio.run(_count()),
    }


def run_backend(backend: str, think_ms: float, pair_calls: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url, cleanup = _prepare_database(backend, workdir)
        try:
            knowledge = _bank_knowledge(url)
            port = _free_port()
            server = _start_server(url, port, args.workers, workdir)
            lag = [] if args.relay else None
            relay, stream = _start_relay(url, args.relay, workdir) if args.relay else (None, None)
            try:
                server_cpu0 = sum(_cpu_s(pid) for pid in _tree(server.pid))
                client_cpu0, machine0 = time.process_time(), _machine_busy_s()
                wall, ms = asyncio.run(
                    _run_students(
                        port,
                        args.students,
                        args.length,
                        knowledge,
                        args.seed,
                        think_ms / 1000,
                        lag,
                        pair_calls,
                    )
                )
                cpu = {
                    "client_cpu_s": time.process_time() - client_cpu0,
                    "machine_busy_s": _machine_busy_s() - machine0,
                    "server_cpu_s": sum(_cpu_s(pid) for pid in _tree(server.pid)) - server_cpu0,
                    "postgres_cpu_s": _postgres_backends_cpu_s(url) if backend == "postgresql" else 0.0,
                }
                relayed = _finish_relay(relay, url, port, args.relay, stream) if relay else {}
            except Exception:
                server.terminate()
                print(server.communicate(timeout=30)[0][-5000:], file=sys.stderr)
                if relay is not None:
                    relay.terminate()
                    print(relay.communicate(timeout=30)[0][-5000:], file=sys.stderr)
                raise
            server.terminate()
            server.communicate(timeout=30)
            stored = _count_answers(url)
        finally:
            cleanup()
    n_answers = args.students * args.length
    return {
        "backend": backend,
        "students": args.students,
        "length": args.length,
        "workers": args.workers,
        "think_ms": think_ms,
        "pair_calls": pair_calls,
        "wall_s": wall,
        "answers_per_s": n_answers / wall,
        "answers_stored": stored,
        "answers_expected": n_answers,
        **cpu,
        **{f"{k}_p50_ms": float(np.percentile(v, 50)) for k, v in ms.items()},
        **{f"{k}_p99_ms": float(np.percentile(v, 99)) for k, v in ms.items()},
        **(_lag_figures(lag) if lag else {}),
        **relayed,
    }


def _lag_figures(lag: list) -> dict:
    backlog, age = np.array(lag, dtype=float).T
    return {
        "lag_samples": len(lag),
        "lag_backlog_p50": float(np.percentile(backlog, 50)),
        "lag_backlog_max": float(backlog.max()),
        "lag_age_p50_s": float(np.percentile(age, 50)),
        "lag_age_p99_s": float(np.percentile(age, 99)),
        "lag_age_max_s": float(age.max()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["postgresql", "sqlite"], choices=["postgresql", "sqlite"]
    )
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="mean pause before each answer in the paced runs (uniform 0.5x-1.5x)",
    )
    parser.add_argument(
        "--pacings", nargs="+", default=["saturated", "paced"], choices=["saturated", "paced"]
    )
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--relay",
        metavar="NATS_URL",
        help="also run `qbank relay` to this NATS server (a stream of the run's own) and report the "
        "outbox lag from /health every 0.25 s",
    )
    parser.add_argument(
        "--pair-calls",
        nargs="+",
        type=int,
        default=[2],
        choices=[1, 2],
        help="2: answer, then GET next (the scaffold's flow); 1: the answer brings the next item "
        "(POST .../answers?next=true). Both: each database and pacing run twice, alternating",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args, _unknown = parser.parse_known_args(argv)

    load = os.getloadavg()[0]
    results = [
        run_backend(backend, 0.0 if pacing == "saturated" else args.think_ms, calls, args)
        for pacing in args.pacings
        for backend in args.backends
        for calls in args.pair_calls
    ]
    print(
        f"\nService load: {args.students} students x {args.length}-item adaptive quizzes, demo bank (600 items), "
        f"{args.workers} worker(s); client, server and database on this machine ({os.cpu_count()} cores, "
        f"load average {load:.1f} -> {os.getloadavg()[0]:.1f})"
    )
    print(
        f"{'database':<11}{'think':>7}{'calls':>6}{'answers/s':>10}{'pair p50':>10}{'pair p99':>10}{'answer p99':>11}"
        f"{'next p99':>9}{'in app p50/p99':>17}{'stored':>12}"
    )
    failed = False
    for r in results:
        ok = r["answers_stored"] == r["answers_expected"]
        failed |= not ok
        print(
            f"{r['backend']:<11}{r['think_ms']:>5.0f}ms{r['pair_calls']:>6}{r['answers_per_s']:>10.0f}"
            f"{r['pair_p50_ms']:>8.1f}ms"
            f"{r['pair_p99_ms']:>8.1f}ms{r['answer_p99_ms']:>9.1f}ms{r['next_p99_ms']:>7.1f}ms"
            f"{r['pair_in_app_p50_ms']:>8.1f}/{r['pair_in_app_p99_ms']:.1f}ms"
            f"{r['answers_stored']:>6}/{r['answers_expected']}{'' if ok else '  MISSING ANSWERS'}"
        )
    print(
        "\nCPU ms per answer (an answer + next pair): this client, the server's processes, the "
        "PostgreSQL backends of the run's database, their sum, and the whole machine (other sessions "
        "included); 'cores at 300/s': the sum x 300 answers/s, against the 2 cores there are"
    )
    print(
        f"{'database':<11}{'think':>7}{'calls':>6}{'client':>8}{'server':>8}{'postgres':>9}{'sum':>7}{'machine':>9}{'cores at 300/s':>16}"
    )
    for r in results:
        per = {k: 1000 * r[f"{k}_cpu_s"] / r["answers_expected"] for k in ("client", "server", "postgres")}
        total = sum(per.values())
        print(
            f"{r['backend']:<11}{r['think_ms']:>5.0f}ms{r['pair_calls']:>6}{per['client']:>8.2f}{per['server']:>8.2f}"
            f"{per['postgres']:>9.2f}{total:>7.2f}{1000 * r['machine_busy_s'] / r['answers_expected']:>9.2f}"
            f"{total * 300 / 1000:>16.2f}"
        )
    for r in results:
        if "lag_samples" in r:
            lost = r["events_in_outbox"] - r["events_on_stream"]
            print(
                f"relay {r['backend']:<11}{r['think_ms']:>5.0f}ms: outbox lag backlog p50 {r['lag_backlog_p50']:.0f} "
                f"max {r['lag_backlog_max']:.0f} events, oldest unsent p50 {r['lag_age_p50_s'] * 1000:.0f} ms "
                f"p99 {r['lag_age_p99_s'] * 1000:.0f} ms max {r['lag_age_max_s'] * 1000:.0f} ms "
                f"({r['lag_samples']} samples); drained {r['drain_after_load_s']:.2f} s after the load; "
                f"{r['events_on_stream']}/{r['events_in_outbox']} events on the stream"
                f"{'' if lost == 0 else '  EVENTS MISSING'}"
            )
            failed |= lost != 0
    for think, calls in sorted({(r["think_ms"], r["pair_calls"]) for r in results}):
        by = {r["backend"]: r for r in results if (r["think_ms"], r["pair_calls"]) == (think, calls)}
        if {"postgresql", "sqlite"} <= set(by):
            pg, lite = by["postgresql"], by["sqlite"]
            print(
                f"think {think:.0f} ms, {calls} call(s) a pair, PostgreSQL / SQLite: throughput x{pg['answers_per_s'] / lite['answers_per_s']:.2f}, "
                f"pair p99 x{pg['pair_p99_ms'] / lite['pair_p99_ms']:.2f}"
            )
        if "postgresql" in by and think:
            p99 = by["postgresql"]["pair_p99_ms"]
            print(
                f"think {think:.0f} ms, {calls} call(s) a pair: target (issue 15) p99(answer + next) <= 30 ms "
                "on PostgreSQL "
                f"{'met' if p99 <= 30 else 'NOT met'} ({p99:.1f} ms)"
            )
        elif "postgresql" in by:
            rate = by["postgresql"]["answers_per_s"]
            print(
                f"saturated, {calls} call(s) a pair: target (issue 15) >= 300 answers/s on PostgreSQL "
                f"{'met' if rate >= 300 else 'NOT met'} ({rate:.0f}/s)"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
