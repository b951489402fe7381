"""CAT simulation: qbank against catsim 0.21 on catsim's natural workload, measured in one run.

Workload: a 500-item 3PL pool with a ~ U(0.8, 2.0), b ~ N(0, 1), c ~ U(0, 0.25) in the logistic
metric (D = 1, which is what catsim's ``irt.icc`` uses: it has no scaling constant), 1000 examinees
theta ~ N(0, 1), fixed length 30, start at theta = 0, maximum-information selection, each side's
default estimator (qbank: EAP on its default grid; catsim: ``NumericalSearchEstimator``, bounded
MLE with Dodd's heuristic). Both sides get the same pool and the same true abilities: they are
written to a temporary ``.npz`` that the catsim subprocess (``_catsim_workload.py``, run by the
separate ``benchmarks/.venv-catsim`` created by ``setup_peers.sh``) reads.

Timing covers the simulation call only (no imports, no pool generation): ``time.perf_counter``
around ``qbank.simulation.simulate`` and around catsim's ``Simulator.simulate``. Each side runs
``--repeats`` times (catsim) and four times as often (qbank: two runs right before and two right
after each catsim run, so both are timed under the same background load); the headline is the
*median* per side and the ratio is median/median; best/best is printed too, and so is the ratio of
median CPU times (``time.process_time``), which background load on a shared machine skews far less.
Accuracy and exposure figures are computed by one function (``workload_metrics``) from each side's
final estimates and per-item administration counts, so both are measured the same way; qbank's
own ``summary`` is checked against it.

A second, qbank-only line runs 1,000,000 examinees on the same pool (chunked, per-examinee item
sequences not kept) in a fresh child process and reports wall time and peak RSS
(``resource.getrusage``), next to a 100,000-examinee child, to show that memory stays bounded.

Usage: ``python benchmarks/bench_simulate.py [--repeats 3] [--scale-examinees 1000000] [--profile]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

import qbank
from qbank.estimation import EAP
from qbank.selection import Selector
from qbank.simulation import simulate
from qbank.stopping import FixedLength

CATSIM_PYTHON = BENCH_DIR / ".venv-catsim" / "bin" / "python"
CATSIM_WORKLOAD = BENCH_DIR / "_catsim_workload.py"
SETUP_PEERS = BENCH_DIR / "setup_peers.sh"

TARGET_SPEEDUP = 200.0
QBANK_RUNS_PER_ROUND = 2  # qbank runs before and after each catsim run
BUSY_LOAD = 1.5  # 1-minute load average above which the figures are flagged as skewed
# "Same range" for accuracy and exposure: RMSE within 25 % of catsim's, max exposure within 0.1,
# unused items within 10 % of the pool. Loose on purpose: EAP and MLE legitimately differ a bit.
RMSE_REL_TOL = 0.25
MAX_EXPOSURE_TOL = 0.10
UNUSED_SHARE_TOL = 0.10


def make_workload(n_items: int, n_examinees: int, seed: int):
    """catsim's natural workload: 3PL pool and N(0, 1) true abilities.

    Returns
    -------
    a, b, c : ndarray of shape (n_items,)
    theta : ndarray of shape (n_examinees,)
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.8, 2.0, n_items)
    b = rng.normal(0.0, 1.0, n_items)
    c = rng.uniform(0.0, 0.25, n_items)
    theta = rng.normal(0.0, 1.0, n_examinees)
    return a, b, c, theta


def workload_metrics(theta, theta_hat, administration_count, test_length) -> dict:
    """Accuracy and exposure of one simulation, computed the same way for both tools.

    Parameters
    ----------
    theta, theta_hat : array_like of shape (n_examinees,)
    administration_count : array_like of shape (n_items,)
        Examinees administered each item.
    test_length : array_like of shape (n_examinees,)

    Returns
    -------
    dict with rmse, bias (mean of theta_hat - theta), max_exposure (largest share of examinees
    given one item), items_never_used, overlap_rate (Chen, Ankenmann & Spray 2003: items two
    random examinees share, over the mean length) and mean_length.
    """
    theta = np.asarray(theta, dtype=float)
    error = np.asarray(theta_hat, dtype=float) - theta
    counts = np.asarray(administration_count, dtype=float)
    n = theta.shape[0]
    mean_length = float(np.mean(test_length))
    return {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(np.mean(error)),
        "max_exposure": float(counts.max() / n),
        "items_never_used": int((counts == 0).sum()),
        "overlap_rate": float((counts * (counts - 1)).sum() / (n * (n - 1)) / mean_length),
        "mean_length": mean_length,
    }


def run_qbank(pool, theta, length: int, repeats: int, seed: int):
    """Time ``qbank.simulation.simulate`` ``repeats`` times.

    Returns
    -------
    wall, cpu : list of float
        ``time.perf_counter`` and ``time.process_time`` (CPU time of all threads) per run.
    result : SimulationResult of the last run
    """
    seconds, cpu, result = [], [], None
    for _ in range(repeats):
        cpu_start = time.process_time()
        start = time.perf_counter()
        result = simulate(
            pool,
            theta=theta,
            stopping=FixedLength(length),
            selector=Selector("max_info"),
            estimator=EAP(),
            rng=seed,
        )
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return seconds, cpu, result


def check_qbank_summary(result, metrics: dict) -> None:
    """qbank's own summary and the benchmark's recomputation must agree; a mismatch is a bug."""
    summary = result.summary
    for key in ("rmse", "bias", "max_exposure", "items_never_used"):
        if not np.isclose(summary[key], metrics[key], rtol=1e-9, atol=1e-12):
            raise RuntimeError(
                f"qbank summary[{key!r}] = {summary[key]} but the benchmark computes {metrics[key]}"
            )
    examinees, items = result.examinees, result.items
    if not np.allclose(examinees["theta_hat"].to_numpy(), result.theta_hat):
        raise RuntimeError("qbank examinees['theta_hat'] disagrees with the result arrays")
    if int(items["administration_count"].sum()) != int(examinees["length"].sum()):
        raise RuntimeError("qbank: administrations per item do not add up to the test lengths")


def ensure_catsim() -> None:
    if not CATSIM_PYTHON.exists():
        print(f"creating the catsim peer environment ({SETUP_PEERS.name}) ...", flush=True)
        subprocess.run(["bash", str(SETUP_PEERS)], check=True)


def run_catsim(npz: Path, length: int, repeats: int, seed: int) -> dict:
    """Run the catsim side in its own venv; returns its JSON (see ``_catsim_workload.py``)."""
    ensure_catsim()
    cmd = [
        str(CATSIM_PYTHON),
        str(CATSIM_WORKLOAD),
        str(npz),
        "--length",
        str(length),
        "--repeats",
        str(repeats),
        "--seed",
        str(seed),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"catsim workload failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def scale_child(n_examinees: int, n_items: int, length: int, seed: int) -> dict:
    """The qbank-only scale run, meant to run in a fresh process so peak RSS is its own."""
    a, b, c, _ = make_workload(n_items, 1, seed)
    pool = qbank.ItemPool.from_arrays(a, b, c, D=1.0, name="catsim-workload")
    rss_before = peak_rss_mib()
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = simulate(
        pool,
        n_examinees=n_examinees,
        stopping=FixedLength(length),
        selector=Selector("max_info"),
        estimator=EAP(),
        rng=seed,
        keep_examinees=False,
    )
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    summary = result.summary
    return {
        "n_examinees": n_examinees,
        "wall_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "simulate_wall_seconds": summary["wall_seconds"],
        "chunk_size": summary.get("chunk_size"),
        "peak_rss_mib_before": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "rmse": summary["rmse"],
        "bias": summary["bias"],
        "max_exposure": summary["max_exposure"],
        "items_never_used": summary["items_never_used"],
    }


def run_scale(n_examinees: int, n_items: int, length: int, seed: int) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--scale-child",
        str(n_examinees),
        "--items",
        str(n_items),
        "--length",
        str(length),
        "--seed",
        str(seed),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"scale run ({n_examinees} examinees) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_qbank(pool, theta, length: int, seed: int, top: int = 25) -> None:
    """Per-function profile of the qbank side (cProfile), printed by own time and cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run_qbank(pool, theta, length, 5, seed)
    profiler.disable()
    stats = pstats.Stats(profiler).strip_dirs()
    print(f"\n--- qbank profile: 5 runs of the workload, top {top} by own time ---")
    stats.sort_stats("tottime").print_stats(top)
    print(f"--- top {top} by cumulative time ---")
    stats.sort_stats("cumulative").print_stats(top)


def fmt_row(name: str, seconds: float, m: dict) -> str:
    return (
        f"{name:<8} {seconds:>10.4f} {m['rmse']:>8.4f} {m['bias']:>+9.4f} {m['max_exposure']:>8.3f} "
        f"{m['items_never_used']:>7d} {m['overlap_rate']:>8.3f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--examinees", type=int, default=1000)
    parser.add_argument("--length", type=int, default=30)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="catsim runs (qbank runs 4x as many, interleaved); the median is reported",
    )
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument(
        "--scale-examinees",
        type=int,
        default=1_000_000,
        help="examinees for the qbank-only scale line (0 skips it)",
    )
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the qbank side")
    parser.add_argument("--json", type=Path, help="write all figures to this JSON file")
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.scale_child:
        print(json.dumps(scale_child(args.scale_child, args.items, args.length, args.seed)))
        return 0

    a, b, c, theta = make_workload(args.items, args.examinees, args.seed)
    pool = qbank.ItemPool.from_arrays(a, b, c, D=1.0, name="catsim-workload")
    # The load average is printed because other work on a small shared machine skews both sides.
    load_before = os.getloadavg()[0]
    print(
        f"CAT simulation benchmark  {dt.date.today()}  {platform.python_implementation()} "
        f"{platform.python_version()}  numpy {np.__version__}  {os.cpu_count()} cpu  "
        f"load {load_before:.2f}"
    )
    print(
        f"workload: {args.items}-item 3PL pool (D=1), {args.examinees} examinees theta~N(0,1), "
        f"fixed length {args.length}, start theta=0, max-info selection, seed {args.seed}"
    )

    # Interleaved: qbank runs right before and after every catsim run, so that on a shared machine
    # both sides are timed in the same stretches of (possibly varying) background load.
    q_seconds, q_cpu, c_seconds, c_cpu, catsim = [], [], [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "workload.npz"
        np.savez(npz, a=a, b=b, c=c, theta=theta)
        for _ in range(args.repeats):
            seconds, cpu, _ = run_qbank(pool, theta, args.length, QBANK_RUNS_PER_ROUND, args.seed)
            q_seconds += seconds
            q_cpu += cpu
            catsim = run_catsim(npz, args.length, 1, args.seed)
            c_seconds += catsim["wall_seconds"]
            c_cpu += catsim["cpu_seconds"]
            seconds, cpu, q_result = run_qbank(pool, theta, args.length, QBANK_RUNS_PER_ROUND, args.seed)
            q_seconds += seconds
            q_cpu += cpu
    catsim["wall_seconds"], catsim["cpu_seconds"] = c_seconds, c_cpu

    q_metrics = workload_metrics(theta, q_result.theta_hat, q_result.administration_count, q_result.length)
    check_qbank_summary(q_result, q_metrics)
    c_metrics = workload_metrics(
        theta, catsim["theta_hat"], catsim["administration_count"], catsim["test_length"]
    )
    q_median, c_median = statistics.median(q_seconds), statistics.median(catsim["wall_seconds"])
    speedup = c_median / q_median

    print(f"\nqbank:  EAP (default grid), Selector('max_info'), FixedLength({args.length})")
    print(
        f"catsim: {catsim['settings']['estimator']}, {catsim['settings']['selector']}, "
        f"{catsim['settings']['initializer']}, {catsim['settings']['stopper']}"
    )
    print(
        f"\n{'tool':<8} {'median s':>10} {'RMSE':>8} {'bias':>9} {'max exp':>8} {'unused':>7} {'overlap':>8}"
    )
    print(fmt_row("qbank", q_median, q_metrics))
    print(fmt_row("catsim", c_median, c_metrics))
    print(
        f"runs (s): qbank {[round(s, 4) for s in q_seconds]}  catsim {[round(s, 2) for s in catsim['wall_seconds']]}"
    )
    cpu_speedup = statistics.median(c_cpu) / statistics.median(q_cpu)
    print(
        f"speed ratio catsim/qbank (median/median): {speedup:.0f}x   "
        f"(best/best: {min(c_seconds) / min(q_seconds):.0f}x; "
        f"CPU time median/median: {cpu_speedup:.0f}x, {statistics.median(c_cpu):.2f} s / "
        f"{statistics.median(q_cpu):.4f} s)"
    )

    same_range = (
        abs(q_metrics["rmse"] - c_metrics["rmse"]) <= RMSE_REL_TOL * c_metrics["rmse"]
        and abs(q_metrics["max_exposure"] - c_metrics["max_exposure"]) <= MAX_EXPOSURE_TOL
        and abs(q_metrics["items_never_used"] - c_metrics["items_never_used"])
        <= UNUSED_SHARE_TOL * args.items
    )
    met = speedup >= TARGET_SPEEDUP and same_range
    print(
        f"target (>= {TARGET_SPEEDUP:.0f}x, RMSE and exposure in the same range): "
        f"{'MET' if met else 'NOT MET'}  (speed {'ok' if speedup >= TARGET_SPEEDUP else 'short'}, "
        f"accuracy/exposure {'same range' if same_range else 'DIFFERENT'})"
    )

    scale = []
    if args.scale_examinees:
        print("\nqbank scale line (fresh process each, chunked, keep_examinees=False):")
        print(
            f"{'examinees':>10} {'wall s':>8} {'CPU s':>8} {'examinees/s':>12} {'peak RSS MiB':>13} "
            f"{'(before sim)':>13} {'RMSE':>7}"
        )
        sizes = sorted({min(100_000, args.scale_examinees), args.scale_examinees})
        for n in sizes:
            row = run_scale(n, args.items, args.length, args.seed)
            scale.append(row)
            print(
                f"{n:>10,d} {row['wall_seconds']:>8.2f} {row['cpu_seconds']:>8.2f} {n / row['wall_seconds']:>12,.0f} "
                f"{row['peak_rss_mib']:>13.0f} {row['peak_rss_mib_before']:>13.0f} {row['rmse']:>7.4f}"
            )

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "date": str(dt.date.today()),
                    "seed": args.seed,
                    "repeats": args.repeats,
                    "qbank": {"seconds": q_seconds, "cpu_seconds": q_cpu, "median": q_median, **q_metrics},
                    "catsim": {
                        "seconds": c_seconds,
                        "cpu_seconds": c_cpu,
                        "median": c_median,
                        **c_metrics,
                        "settings": catsim["settings"],
                    },
                    "speedup_median": speedup,
                    "speedup_cpu_median": cpu_speedup,
                    "target_met": met,
                    "scale": scale,
                    "load_average": {"before": load_before, "after": os.getloadavg()[0]},
                },
                indent=2,
            )
            + "\n"
        )

    load_after = os.getloadavg()[0]
    print(
        f"\nload average: {load_before:.2f} before, {load_after:.2f} after"
        + (
            "  -- other work was running: timings are skewed, re-run on a quiet machine"
            if max(load_before, load_after) > BUSY_LOAD
            else ""
        )
    )
    if args.profile:
        profile_qbank(pool, theta, args.length, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
