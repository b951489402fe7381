"""Sympson-Hetter calibration to convergence: wall time, iterations, and the same target by item eligibility.

Workload (issue 3): a 1000-item 3PL pool drawn as in ``bench_simulate.py`` (a ~ U(0.8, 2.0),
b ~ N(0, 1), c ~ U(0, 0.25), D = 1), fixed length L = 40, target r = 0.2, 20,000 fresh simulees
theta ~ N(0, 1) per iteration (after a warm-up on 5,000), EAP, the default rule of issue 13 (aim at
r' = r - margin, max P(A) <= r' + tol and stable parameters for 3 consecutive iterations, their
parameters averaged). Target: full calibration to convergence in at most 10 s wall, and validation
on fresh simulees at most r + 3 SE.

Timing: ``time.perf_counter`` around ``qbank.exposure.calibrate_exposure`` (everything: index
builds, all iterations, updates); per-iteration times are the simulator's own ``wall_seconds``.
The CPU time of the process and its worker processes (``os.times``) is printed next to it: on a shared 2-core
machine other work inflates wall time, while CPU time stays close to the wall time of an idle
machine (the work is single-threaded numpy); the load average is printed before and after.
Both methods get the same seed, so their first two iterations run identical parameters on the
same draws; both are validated on the same 50,000 fresh simulees (another seed), next to plain
maximum information on those simulees (the price of control in RMSE).

Peers: no public CAT tool calibrates Sympson-Hetter parameters (catsim, catR, adaptivetesting,
mirtCAT apply given K at most). The peer line runs catsim 0.21's plain maximum-information
simulation (``_catsim_workload.py``, the same component set as ``bench_simulate.py``) on
``--peer-examinees`` simulees of the same pool and length, and extrapolates its time per
simulee to the examinees the qbank calibration simulated: a lower bound for the same iterative
procedure on a per-examinee simulator (Sympson-Hetter draws and withdrawals only add work).

The acceptance lines of issue 13 run the demo pool (L = 30, r = 0.2 and 0.25, 20,000 simulees per
iteration) with classic Sympson-Hetter, conditional Sympson-Hetter (strata -1, 0, 1) and item
eligibility, and a hold-out 300-item pool (r = 0.15, L = 25), each validated on fresh simulees
against r + 3 SE (per true stratum when conditional); ``--repeats`` reruns the timed calibration.

Usage: ``python benchmarks/bench_sh.py [--seed 20261124] [--peer-examinees 200] [--repeats 1] [--skip-peer]
[--skip-demo] [--skip-conditional] [--processes 2]`` (``--processes N``: each simulation on N forked
worker processes, ``qbank.scale_out.LocalProcesses``; the same parameters bit for bit)
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
for path in (REPO_ROOT, BENCH_DIR):  # run from a checkout without `pip install -e .`
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_simulate import make_workload, run_catsim

import qbank
from qbank.exposure import calibrate_exposure, comparison_table, validate_exposure
from qbank.scale_out import LocalProcesses
from qbank.stopping import FixedLength

TARGET_SECONDS = 10.0
DEMO_POOL = REPO_ROOT / "data" / "demo_pool.csv"


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the forked workers of --processes)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def calibrate_timed(pool, r_max, length, n_examinees, seed, method, strata_cuts=None, client=None):
    start, cpu = time.perf_counter(), cpu_seconds()
    calibration = calibrate_exposure(
        pool,
        r_max,
        stopping=FixedLength(length),
        n_examinees=n_examinees,
        method=method,
        rng=seed,
        strata_cuts=strata_cuts,
        client=client,
    )
    calibration.settings["cpu_seconds"] = cpu_seconds() - cpu
    return calibration, time.perf_counter() - start


def holdout_pool(seed):
    """A 300-item 3PL pool qbank has never seen (a ~ lognormal(0, 0.3), b ~ N(0, 1), c ~ U(0, 0.25))."""
    rng = np.random.default_rng(seed + 300)
    a, b, c = rng.lognormal(0.0, 0.3, 300), rng.normal(0.0, 1.0, 300), rng.uniform(0.0, 0.25, 300)
    return qbank.ItemPool.from_arrays(a, b, c, D=1.0, name="holdout-300")


def per_iteration(calibration) -> list[float]:
    return calibration.trace.groupby("iteration")["wall_seconds"].first().round(2).tolist()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--r-max", type=float, default=0.2)
    parser.add_argument("--examinees", type=int, default=20_000, help="simulees per iteration")
    parser.add_argument("--validation-examinees", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--peer-examinees", type=int, default=200)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-conditional", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="timed Sympson-Hetter calibrations")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes per simulation (qbank.scale_out.LocalProcesses; 1 = in-process)",
    )
    parser.add_argument("--json", type=Path, help="write all figures to this JSON file")
    args = parser.parse_args(argv)

    a, b, c, theta = make_workload(args.items, args.peer_examinees, args.seed)
    pool = qbank.ItemPool.from_arrays(a, b, c, D=1.0, name="sh-workload")
    load_before = os.getloadavg()[0]
    print(
        f"Sympson-Hetter calibration benchmark  {dt.date.today()}  {platform.python_implementation()} "
        f"{platform.python_version()}  numpy {np.__version__}  {os.cpu_count()} cpu  load {load_before:.2f}"
    )
    print(
        f"workload: {args.items}-item 3PL pool (D=1), L={args.length}, r={args.r_max}, {args.examinees} simulees "
        f"per iteration, EAP, seed {args.seed}"
    )

    client = LocalProcesses(args.processes) if args.processes > 1 else None
    print(f"simulations: {'in-process' if client is None else f'{args.processes} forked worker processes'}")
    runs, figures = {}, {}
    for method in ("sympson_hetter", "item_eligibility"):
        calibration, seconds = calibrate_timed(
            pool, args.r_max, args.length, args.examinees, args.seed, method, client=client
        )
        repeats = [(seconds, calibration.settings["cpu_seconds"])]
        for _ in range(args.repeats - 1 if method == "sympson_hetter" else 0):
            again, again_seconds = calibrate_timed(
                pool, args.r_max, args.length, args.examinees, args.seed, method, client=client
            )
            repeats.append((again_seconds, again.settings["cpu_seconds"]))
        validation = validate_exposure(
            calibration, n_examinees=args.validation_examinees, rng=args.seed + 1, client=client
        )
        runs[method] = (calibration, validation)
        figures[method] = {
            "seconds": seconds,
            "cpu_seconds": calibration.settings["cpu_seconds"],
            "iterations": calibration.n_iterations,
            "converged": calibration.converged,
            "per_iteration": per_iteration(calibration),
            "repeats_wall_cpu": [[round(w, 2), round(c, 2)] for w, c in repeats],
            # a speed-up must leave the parameters' bytes alone: compare this across versions
            "sh_p_sha256": hashlib.sha256(np.ascontiguousarray(calibration.sh_p).tobytes()).hexdigest(),
            "validation_max_exposure": float(validation.max_exposure.max()),
            "validation_tolerance": float(validation.tolerance.max()),
            "validation_passed": validation.passed,
            "rmse": validation.controlled.summary["rmse"],
            "rmse_uncontrolled": validation.uncontrolled.summary["rmse"],
        }
        print(f"\n{method}: {calibration.message}")
        print(
            f"  total {seconds:.1f} s (CPU {figures[method]['cpu_seconds']:.1f} s), {calibration.n_iterations} "
            f"iterations, per iteration (s) {figures[method]['per_iteration']}; all runs (wall, CPU) "
            f"{figures[method]['repeats_wall_cpu']}; K sha256 {figures[method]['sh_p_sha256'][:16]}"
        )
        print(
            f"  validation ({args.validation_examinees} fresh): max exposure "
            f"{figures[method]['validation_max_exposure']:.4f} (limit "
            f"{args.r_max + figures[method]['validation_tolerance']:.4f}), "
            f"{'passed' if validation.passed else 'FAILED'}; RMSE {figures[method]['rmse']:.4f} "
            f"(without control {figures[method]['rmse_uncontrolled']:.4f})"
        )
    table = comparison_table(runs)
    print("\n" + table.to_string())

    sh = figures["sympson_hetter"]
    met = sh["converged"] and sh["seconds"] < TARGET_SECONDS
    print(
        f"\ntarget (Sympson-Hetter converges in < {TARGET_SECONDS:.0f} s): {'MET' if met else 'NOT MET'}  "
        f"({sh['seconds']:.1f} s wall = {sh['seconds'] / TARGET_SECONDS:.2f} of the budget; CPU "
        f"{sh['cpu_seconds']:.1f} s = {sh['cpu_seconds'] / TARGET_SECONDS:.2f})"
    )

    peer = None
    if not args.skip_peer:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "workload.npz"
            np.savez(npz, a=a, b=b, c=c, theta=theta)
            catsim = run_catsim(npz, args.length, 1, args.seed)
        per_examinee = catsim["wall_seconds"][0] / args.peer_examinees
        simulated = sh["iterations"] * args.examinees
        peer = {
            "examinees": args.peer_examinees,
            "seconds": catsim["wall_seconds"][0],
            "seconds_per_examinee": per_examinee,
            "extrapolated_seconds": per_examinee * simulated,
        }
        print(
            f"\npeer (catsim 0.21 max-info, {args.peer_examinees} simulees, {catsim['wall_seconds'][0]:.2f} s): "
            f"{per_examinee * 1e3:.2f} ms per simulee -> {simulated:,d} simulees of this calibration would take "
            f"{peer['extrapolated_seconds'] / 60:.0f} min, {peer['extrapolated_seconds'] / sh['seconds']:.0f}x "
            f"qbank's {sh['seconds']:.1f} s"
        )

    demo = []
    if not args.skip_demo:
        demo_pool = qbank.load_pool(DEMO_POOL)
        holdout = holdout_pool(args.seed)
        cases = [
            (demo_pool, r, 30, method, cuts)
            for r in (0.2, 0.25)
            for method, cuts in (
                ("sympson_hetter", None),
                ("sympson_hetter", [-1, 0, 1]),
                ("item_eligibility", None),
            )
            if not (cuts is not None and args.skip_conditional)
        ] + [(holdout, 0.15, 25, "sympson_hetter", None)]
        print(
            "\nacceptance: validated max exposure against r + 3 SE (fresh simulees, per true stratum when conditional)"
        )
        for case_pool, r, length, method, cuts in cases:
            calibration, seconds = calibrate_timed(
                case_pool, r, length, 20_000, 0, method, strata_cuts=cuts, client=client
            )
            n_val = 40_000 if case_pool is holdout else 20_000
            validation = validate_exposure(
                calibration, n_examinees=n_val, rng=1, compare_uncontrolled=False, client=client
            )
            row = {
                "pool": case_pool.name,
                "r": r,
                "length": length,
                "method": method + (" conditional" if cuts else ""),
                "iterations": calibration.n_iterations,
                "seconds": seconds,
                "cpu_seconds": calibration.settings["cpu_seconds"],
                "validation_examinees": n_val,
                "max_exposure": validation.max_exposure.round(4).tolist(),
                "limit": (r + validation.tolerance).round(4).tolist(),
                "items_over_limit": len(validation.items_over_limit()),
                "passed": validation.passed,
            }
            demo.append(row)
            print(
                f"  {row['pool']} r={r} L={length} {row['method']}: {row['iterations']} iterations, "
                f"{seconds:.1f} s (CPU {row['cpu_seconds']:.1f}); max {row['max_exposure']} vs limit "
                f"{row['limit']} on {n_val} -> {'passed' if validation.passed else 'FAILED'}"
            )

    print(f"\nload average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "date": str(dt.date.today()),
                    "seed": args.seed,
                    "processes": args.processes,
                    "methods": figures,
                    "target_met": met,
                    "peer": peer,
                    "acceptance": demo,
                    "load_average": {"before": load_before, "after": os.getloadavg()[0]},
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
