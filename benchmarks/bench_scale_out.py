"""Simulation in-process against a 2-worker Dask ``LocalCluster``: throughput, memory, scheduler
overhead, and a bit-for-bit check of the two results.

Workload (issue 16): the demo pool (600 3PL items), fixed length L = 30, maximum information,
EAP, theta ~ N(0, 1), 10,000,000 simulees by default (``--examinees``), counts only
(``keep_examinees=False, keep_estimates=False``: no per-examinee arrays come back).

Each side runs in a fresh process, so its peak memory is its own (``ru_maxrss``):
- in-process: ``qbank.simulate`` in one process, no Dask imported;
- cluster: a ``LocalCluster`` of ``--workers`` single-threaded worker processes (nannies), the
  scheduler inside the client process; the workers are started and have imported qbank before
  the clock starts (start-up is printed apart).
Reported per side: wall time, simulees per second, CPU seconds (client and each worker,
``time.process_time``), peak RSS of every process. The machine is shared (2 cores, other jobs):
CPU seconds are the steadier figure; wall time on the cluster is bounded by free cores.

Scheduler overhead per task, two ways: (1) in the real run, ``(wall x worker threads - sum of
the tasks' own compute seconds) / tasks``, the time a worker thread spent not computing, per
task; (2) 400 empty tasks through the same executor (round trip per task with the window
pipelining them).

Bit-for-bit: selection and administration counts, bin sums, tests ended short and the summary
(all but ``wall_seconds``) must be identical.

Usage: ``python benchmarks/bench_scale_out.py [--examinees 10000000] [--workers 2] [--seed 16]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEMO_POOL = REPO_ROOT / "data" / "demo_pool.csv"
LENGTH = 30


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _worker_stats() -> dict:
    return {"cpu": time.process_time(), "peak_mib": _peak_mib(), "pid": os.getpid()}


def _noop(x):
    return x


def _save(result, path: Path) -> None:
    summary = {k: v for k, v in result.summary.items() if k != "wall_seconds"}
    np.savez(
        path,
        selection_count=result.selection_count,
        administration_count=result.administration_count,
        bin_totals=result.bin_totals,
        pool_exhausted=np.array(result.pool_exhausted),
        summary=np.array(json.dumps(summary, sort_keys=True, default=float)),
    )


def _run_kwargs(n: int, seed: int) -> dict:
    from qbank import FixedLength

    return dict(
        n_examinees=n,
        stopping=FixedLength(LENGTH),
        rng=seed,
        keep_examinees=False,
        keep_estimates=False,
    )


def child_in_process(n: int, seed: int, out: Path) -> dict:
    from qbank import load_pool, simulate

    pool = load_pool(DEMO_POOL)
    cpu, start = time.process_time(), time.perf_counter()
    result = simulate(pool, **_run_kwargs(n, seed))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    _save(result, out)
    assert "distributed" not in sys.modules
    return {"wall": wall, "cpu": cpu, "peak_mib": _peak_mib(), "chunk_size": result.settings["chunk_size"]}


def child_cluster(n: int, seed: int, workers: int, out: Path) -> dict:
    from distributed import Client, LocalCluster

    from qbank import load_pool
    from qbank.scale_out import DaskExecutor, Task
    from qbank.simulation import plan_simulation

    pool = load_pool(DEMO_POOL)
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    client.run(lambda: __import__("qbank.simulation"))
    startup = time.perf_counter() - t0
    executor = DaskExecutor(client)

    before = client.run(_worker_stats)
    cpu, start = time.process_time(), time.perf_counter()
    plan = plan_simulation(pool, slots=executor.slots, **_run_kwargs(n, seed))
    parts = [None] * len(plan.tasks)
    for i, outcome, _ in executor.run(plan.tasks):
        parts[i] = outcome
    wall = time.perf_counter() - start
    result = plan.assemble(parts, wall)
    client_cpu = time.process_time() - cpu
    after = client.run(_worker_stats)
    task_seconds = sum(p.seconds for p in parts)
    overhead = (wall * executor.slots - task_seconds) / len(parts)

    n_empty = 400
    empty = [Task(_noop, (), (i,)) for i in range(n_empty)]
    t_empty = time.perf_counter()
    for _ in executor.run(empty):
        pass
    empty_per_task = (time.perf_counter() - t_empty) / n_empty

    _save(result, out)
    stats = {
        "startup": startup,
        "wall": wall,
        "client_cpu": client_cpu,
        "client_peak_mib": _peak_mib(),
        "tasks": len(parts),
        "examinees_per_task": n / len(parts),
        "task_seconds_mean": task_seconds / len(parts),
        "overhead_per_task": overhead,
        "empty_task_round_trip": empty_per_task,
        "workers": {
            addr: {
                "cpu": after[addr]["cpu"] - before[addr]["cpu"],
                "peak_mib": after[addr]["peak_mib"],
            }
            for addr in after
        },
    }
    client.close()
    cluster.close()
    return stats


def _child(argv: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, *argv], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _identical(a: Path, b: Path) -> bool:
    x, y = np.load(a), np.load(b)
    return all(x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]) for k in x.files)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examinees", type=int, default=10_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--child", choices=["in_process", "cluster"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)

    if args.child == "in_process":
        print(json.dumps(child_in_process(args.examinees, args.seed, args.out)))
        return 0
    if args.child == "cluster":
        print(json.dumps(child_cluster(args.examinees, args.seed, args.workers, args.out)))
        return 0

    n = args.examinees
    print(
        f"bench_scale_out {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: demo pool, L = {LENGTH}, "
        f"{n:,} simulees, {args.workers} workers; load average {os.getloadavg()[0]:.2f}, "
        f"{os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "in_process.npz", Path(tmp) / "cluster.npz"
        common = ["--examinees", str(n), "--seed", str(args.seed), "--workers", str(args.workers)]
        local = _child([*common, "--child", "in_process", "--out", str(a)])
        dask = _child([*common, "--child", "cluster", "--out", str(b)])
        same = _identical(a, b)
    worker_cpu = sum(w["cpu"] for w in dask["workers"].values())
    print(
        f"in-process : {local['wall']:8.1f} s wall, {n / local['wall']:10,.0f} simulees/s, "
        f"CPU {local['cpu']:.1f} s ({n / local['cpu']:,.0f} simulees per CPU-s), peak {local['peak_mib']:.0f} MiB"
    )
    print(
        f"cluster    : {dask['wall']:8.1f} s wall, {n / dask['wall']:10,.0f} simulees/s "
        f"({local['wall'] / dask['wall']:.2f}x in-process), CPU workers {worker_cpu:.1f} s + client/scheduler "
        f"{dask['client_cpu']:.1f} s ({n / (worker_cpu + dask['client_cpu']):,.0f} simulees per CPU-s); "
        f"start-up {dask['startup']:.1f} s (not timed)"
    )
    peaks = ", ".join(f"{w['peak_mib']:.0f}" for w in dask["workers"].values())
    print(f"peak RSS   : client+scheduler {dask['client_peak_mib']:.0f} MiB, workers {peaks} MiB")
    print(
        f"tasks      : {dask['tasks']} of {dask['examinees_per_task']:,.0f} simulees, "
        f"{dask['task_seconds_mean']:.3f} s compute each; overhead per task {1e3 * dask['overhead_per_task']:.1f} ms "
        f"({100 * dask['overhead_per_task'] / dask['task_seconds_mean']:.1f} % of a task); "
        f"empty-task round trip {1e3 * dask['empty_task_round_trip']:.1f} ms"
    )
    print(f"bit for bit: {'identical' if same else 'DIFFERENT'} (counts, bin sums, summary)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
