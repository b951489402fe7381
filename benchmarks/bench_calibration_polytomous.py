"""Polytomous calibration (issue 18): qbank's Bock-Aitkin EM for the GRM and GPCM against girth 0.8.0, one run.

Workloads (every replication draws a new bank and new examinees, theta ~ N(0, 1)):

1. complete data, ``--persons`` examinees x ``--items`` items with 4 categories (``generate_pool``
   with ``polytomous_share=1``: a ~ U(0.8, 2), thresholds ``b + sorted N(0, 1)`` for the GRM, in draw
   order for the GPCM), for each of GRM and GPCM: RMSE of a and of the thresholds, seconds per fit
   for qbank without a prior on log a (girth has none) and with its default N(0, 0.5), and for girth's
   ``grm_mml`` / ``pcm_mml`` on the same data (``max_iteration`` 500: its default of 25 stops
   before convergence on some replications), plus the largest |qbank - girth| difference;
2. mixed run with missing responses: 30 3PL items and 10 GRM items, 3000 examinees, 20 % of the cells
   missing at random, ``Calibrator('GRM', dichotomous_model='3PL')``; RMSE of a, b, c of the 3PL items
   and of a and the thresholds of the GRM items (girth has no mixed model, so qbank only);
3. scale (``--large``): 20,000 examinees x 200 GRM items with 4 categories, 70 % of the cells missing
   (6,000 responses per item), against a 2PL calibration of dichotomous data of the same shape
   drawn in the same run (the baseline: the dichotomous EM on the same number of responses).

Timing is CPU time (``time.process_time``) and wall time around the fit call only, one BLAS thread
for both sides; medians over the replications are printed.

Usage: ``python benchmarks/bench_calibration_polytomous.py [--replications 3] [--seed 2026]
[--persons 2000] [--items 20] [--large] [--json PATH]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from bench_calibration import write_results

from qbank import polytomous
from qbank.calibration import CalibrationWarning, Calibrator, read_responses
from qbank.calibration.girth_check import girth_gpcm, girth_grm
from qbank.pool import ItemPool, generate_pool


def simulate_scores(pool: ItemPool, theta, rng, missing=0.0) -> pd.DataFrame:
    """Scores drawn from the category kernel (``qbank.polytomous``); ``missing`` of the cells blanked."""
    p = polytomous.category_probabilities(
        theta[:, None], pool.a, pool.b, pool.c, pool.D, pool.model_codes, pool.threshold_table
    )
    scores = (rng.random(p.shape[:2])[..., None] > np.cumsum(p, axis=-1)).sum(axis=-1).astype(float)
    scores[rng.random(scores.shape) < missing] = np.nan
    return pd.DataFrame(scores, columns=pool.item_id)


def rmse(estimate, truth) -> float:
    return float(
        np.sqrt(np.nanmean((np.asarray(estimate, dtype=float) - np.asarray(truth, dtype=float)) ** 2))
    )


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def complete(model: str, replications: int, n_persons: int, n_items: int, rng) -> dict:
    columns = ["b1", "b2", "b3"]
    rows = []
    for _ in range(replications):
        pool = generate_pool(
            n_items, "2PL", rng=rng, polytomous_share=1.0, polytomous_model=model, n_categories=4
        )
        responses = simulate_scores(pool, rng.normal(size=n_persons), rng)
        ours, wall, cpu = timed(lambda: Calibrator(model, prior_loga=None).fit(responses).report_.items)
        prior, prior_wall, _ = timed(lambda: Calibrator(model).fit(responses).report_.items)
        girth = girth_grm if model == "GRM" else girth_gpcm
        theirs, girth_wall, girth_cpu = timed(lambda: girth(responses, {"max_iteration": 500}))
        rows.append(
            {
                "qbank_a": rmse(ours["a"], pool.a),
                "qbank_b": rmse(ours[columns], pool.threshold_table),
                "qbank_prior_a": rmse(prior["a"], pool.a),
                "qbank_prior_b": rmse(prior[columns], pool.threshold_table),
                "girth_a": rmse(theirs["a"], pool.a),
                "girth_b": rmse(theirs[columns], pool.threshold_table),
                "max_diff_a": float(np.abs(ours["a"] - theirs["a"]).max()),
                "max_diff_b": float(np.nanmax(np.abs(ours[columns].to_numpy() - theirs[columns].to_numpy()))),
                "qbank_wall": wall,
                "qbank_cpu": cpu,
                "qbank_prior_wall": prior_wall,
                "girth_wall": girth_wall,
                "girth_cpu": girth_cpu,
            }
        )
    return _summarise(rows)


def mixed(replications: int, rng) -> dict:
    rows = []
    for _ in range(replications):
        dichotomous = generate_pool(30, "3PL", rng=rng)
        graded = generate_pool(
            10, "2PL", rng=rng, polytomous_share=1.0, polytomous_model="GRM", n_categories=4
        )
        pool = ItemPool.from_arrays(
            np.r_[dichotomous.a, graded.a],
            np.r_[dichotomous.b, np.full(10, np.nan)],
            np.r_[dichotomous.c, np.zeros(10)],
            item_id=[f"Q{i:02d}" for i in range(40)],
            model=["3PL"] * 30 + ["GRM"] * 10,
            thresholds=np.vstack([np.full((30, 3), np.nan), graded.threshold_table]),
        )
        responses = simulate_scores(pool, rng.normal(size=3000), rng, missing=0.2)
        items, wall, cpu = timed(
            lambda: Calibrator("GRM", dichotomous_model="3PL").fit(responses).report_.items
        )
        rows.append(
            {
                "3pl_a": rmse(items["a"].iloc[:30], dichotomous.a),
                "3pl_b": rmse(items["b"].iloc[:30], dichotomous.b),
                "3pl_c": rmse(items["c"].iloc[:30], dichotomous.c),
                "grm_a": rmse(items["a"].iloc[30:], graded.a),
                "grm_b": rmse(items[["b1", "b2", "b3"]].iloc[30:], graded.threshold_table),
                "qbank_wall": wall,
                "qbank_cpu": cpu,
            }
        )
    return _summarise(rows)


def large(rng) -> dict:
    graded = generate_pool(200, "2PL", rng=rng, polytomous_share=1.0, polytomous_model="GRM", n_categories=4)
    # Validating the wide table (read_responses) is timed apart: it is the same for both models.
    table = simulate_scores(graded, rng.normal(size=20_000), rng, missing=0.7)
    responses, read_wall, read_cpu = timed(lambda: read_responses(table))
    report, wall, cpu = timed(lambda: Calibrator("GRM").fit(responses).report_)
    dichotomous = generate_pool(200, "2PL", rng=rng)
    baseline = read_responses(simulate_scores(dichotomous, rng.normal(size=20_000), rng, missing=0.7))
    twopl, twopl_wall, twopl_cpu = timed(lambda: Calibrator("2PL").fit(baseline).report_)
    return {
        "grm_a": rmse(report.items["a"], graded.a),
        "grm_b": rmse(report.items[["b1", "b2", "b3"]], graded.threshold_table),
        "grm_iterations": report.summary["iterations"],
        "read_wall": read_wall,
        "read_cpu": read_cpu,
        "qbank_wall": wall,
        "qbank_cpu": cpu,
        "twopl_a": rmse(twopl.items["a"], dichotomous.a),
        "twopl_b": rmse(twopl.items["b"], dichotomous.b),
        "twopl_iterations": twopl.summary["iterations"],
        "twopl_wall": twopl_wall,
        "twopl_cpu": twopl_cpu,
    }


def _summarise(rows) -> dict:
    """Means of the errors, medians of the times."""
    out = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        timing = key.endswith(("_wall", "_cpu"))
        out[key] = statistics.median(values) if timing else float(np.mean(values))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--persons", type=int, default=2000)
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument(
        "--large", action="store_true", help="also the 20,000 x 200 scale workload (about 1 min)"
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "bench_calibration_polytomous.json"
    )
    args = parser.parse_args(argv)
    streams = np.random.default_rng(args.seed).spawn(4)
    results = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {platform.processor()}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "seed": args.seed,
        "replications": args.replications,
        "load_average_at_start": os.getloadavg(),
    }
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    with threadpool_limits(limits=1, user_api="blas"):
        for model, stream in zip(("GRM", "GPCM"), streams):
            fig = results[f"complete_{model}"] = complete(
                model, args.replications, args.persons, args.items, stream
            )
            print(
                f"\n{model}, complete {args.persons} x {args.items} items, 4 categories, {args.replications} replications\n"
                f"  qbank (no prior)   RMSE a {fig['qbank_a']:.3f}  thresholds {fig['qbank_b']:.3f}  "
                f"{fig['qbank_cpu']:.2f} s CPU, {fig['qbank_wall']:.2f} s wall\n"
                f"  qbank (log a prior) RMSE a {fig['qbank_prior_a']:.3f}  thresholds {fig['qbank_prior_b']:.3f}  "
                f"{fig['qbank_prior_wall']:.2f} s wall\n"
                f"  girth              RMSE a {fig['girth_a']:.3f}  thresholds {fig['girth_b']:.3f}  "
                f"{fig['girth_cpu']:.2f} s CPU, {fig['girth_wall']:.2f} s wall\n"
                f"  girth / qbank CPU time {fig['girth_cpu'] / fig['qbank_cpu']:.1f}x; "
                f"largest |qbank - girth|: a {fig['max_diff_a']:.3f}, thresholds {fig['max_diff_b']:.3f}"
            )
        fig = results["mixed_3pl_grm"] = mixed(args.replications, streams[2])
        print(
            f"\nmixed: 30 3PL + 10 GRM items, 3000 examinees, 20 % missing, {args.replications} replications\n"
            f"  3PL RMSE a {fig['3pl_a']:.3f} b {fig['3pl_b']:.3f} c {fig['3pl_c']:.3f}; "
            f"GRM RMSE a {fig['grm_a']:.3f} thresholds {fig['grm_b']:.3f}; "
            f"{fig['qbank_cpu']:.2f} s CPU, {fig['qbank_wall']:.2f} s wall"
        )
        if args.large:
            fig = results["large_grm"] = large(streams[3])
            print(
                f"\nscale: 20,000 examinees x 200 GRM items (4 categories), 70 % missing\n"
                f"  GRM RMSE a {fig['grm_a']:.3f} thresholds {fig['grm_b']:.3f}; {fig['grm_iterations']} cycles, "
                f"{fig['qbank_cpu']:.2f} s CPU, {fig['qbank_wall']:.2f} s wall (reading the wide table apart: "
                f"{fig['read_cpu']:.2f} s CPU)\n"
                f"  2PL baseline, same shape: RMSE a {fig['twopl_a']:.3f} b {fig['twopl_b']:.3f}; "
                f"{fig['twopl_iterations']} cycles, {fig['twopl_cpu']:.2f} s CPU, {fig['twopl_wall']:.2f} s wall\n"
                f"  GRM / 2PL CPU time {fig['qbank_cpu'] / fig['twopl_cpu']:.1f}x, "
                f"per cycle {fig['qbank_cpu'] / fig['grm_iterations'] / (fig['twopl_cpu'] / fig['twopl_iterations']):.1f}x"
            )
    write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
