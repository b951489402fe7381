"""CAT simulation on a mixed pool against a dichotomous pool of the same size, in one run (issue 18).

Workload: 600 items drawn by ``generate_pool(600, "3PL", rng=seed)`` (a ~ U(0.8, 2), b ~ N(0, 1),
c ~ U(0, 0.25), D = 1); the mixed pool draws the same items and makes a third of them (200, chosen at
random) polytomous with 4 categories, thresholds spread around the item's b
(``polytomous_share=1/3``): one mixed pool of GRM items, one of GPCM items. 20,000 simulees
theta ~ N(0, 1), fixed length 30, maximum information, EAP (the defaults of ``qbank.simulate``),
in process.

Each pool runs ``--repeats`` times, interleaved (dichotomous, GRM, GPCM, dichotomous, ...), so all
see the same background load; the figures are the median wall time (``time.perf_counter``) and the
median CPU time (``time.process_time``, which load on a shared machine skews far less) per pool, and
the ratio of each mixed pool's median to the dichotomous one's. Target: within 2x.

Usage: ``python benchmarks/bench_polytomous.py [--repeats 3] [--examinees 20000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from qbank import FixedLength, generate_pool, simulate

TARGET_RATIO = 2.0


def pools(seed: int) -> dict:
    return {
        "dichotomous": generate_pool(600, "3PL", rng=seed),
        "mixed GRM": generate_pool(600, "3PL", rng=seed, polytomous_share=1 / 3, n_categories=4),
        "mixed GPCM": generate_pool(
            600, "3PL", rng=seed, polytomous_share=1 / 3, polytomous_model="GPCM", n_categories=4
        ),
    }


def run_once(pool, theta, length: int, seed: int) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    result = simulate(pool, theta=theta, stopping=FixedLength(length), rng=seed, keep_examinees=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "rmse": result.summary["rmse"],
        "max_exposure": result.summary["max_exposure"],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examinees", type=int, default=20_000)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20261204)
    parser.add_argument("--json", type=Path)
    args, _ = parser.parse_known_args(argv)

    by_name = pools(args.seed)
    theta = np.random.default_rng(args.seed + 1).normal(size=args.examinees)
    for pool in by_name.values():  # warm the information index caches and imports
        simulate(pool, theta=theta[:200], stopping=FixedLength(args.length), rng=0, keep_examinees=False)
    runs = {name: [] for name in by_name}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, pool in by_name.items():
            runs[name].append(run_once(pool, theta, args.length, args.seed))
    load_after = os.getloadavg()[0]

    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "examinees": args.examinees,
        "length": args.length,
        "repeats": args.repeats,
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "pools": {},
    }
    base = {k: statistics.median(r[k] for r in runs["dichotomous"]) for k in ("wall", "cpu")}
    print(
        f"{args.examinees} simulees, L = {args.length}, 600 items, {args.repeats} runs each, load {load_before:.1f}"
    )
    print(f"{'pool':<12} {'wall s':>8} {'CPU s':>8} {'ratio (CPU)':>12} {'RMSE':>7} {'max exp':>8}")
    for name, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        figures = {
            "wall_median": round(wall, 3),
            "cpu_median": round(cpu, 3),
            "wall_ratio": round(wall / base["wall"], 3),
            "cpu_ratio": round(cpu / base["cpu"], 3),
            "rmse": round(results[0]["rmse"], 4),
            "max_exposure": round(results[0]["max_exposure"], 4),
            "n_polytomous": int((by_name[name].model_codes != 0).sum()),
        }
        report["pools"][name] = figures
        print(
            f"{name:<12} {wall:8.2f} {cpu:8.2f} {figures['cpu_ratio']:12.2f} {figures['rmse']:7.4f} "
            f"{figures['max_exposure']:8.3f}"
        )
    worst = max(report["pools"][name]["cpu_ratio"] for name in ("mixed GRM", "mixed GPCM"))
    report["target_met"] = worst <= TARGET_RATIO
    print(
        f"target: mixed within {TARGET_RATIO:g}x of dichotomous (CPU): {'met' if report['target_met'] else 'NOT met'}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
