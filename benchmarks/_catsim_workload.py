"""The catsim side of the CAT-simulation benchmark; run by ``benchmarks/.venv-catsim/bin/python``.

It never imports qbank: it reads the pool and the true abilities that ``bench_simulate.py``
wrote to an ``.npz`` (arrays ``a, b, c`` of shape (n_items,) and ``theta`` of shape
(n_examinees,)), runs catsim 0.21's ``Simulator`` ``--repeats`` times and prints one JSON
object on stdout:

``wall_seconds``          list of floats, ``time.perf_counter`` around ``Simulator.simulate`` per run
``cpu_seconds``           list of floats, ``time.process_time`` (this process's CPU time) per run
``catsim_duration``       list of floats, catsim's own ``Simulator.duration`` per run
``theta_hat``             list of floats (n_examinees,), final estimates of the last run
``administration_count``  list of ints (n_items,), examinees administered each item, last run
``test_length``           list of ints (n_examinees,), items administered per examinee, last run
``catsim_rmse``, ``catsim_bias``, ``catsim_overlap``  catsim's own summary figures, last run
``settings``              the components used, as catsim names them

catsim's response model is ``c + (d - c) / (1 + exp(-a (theta - b)))`` (``catsim.irt.icc``):
no scaling constant, i.e. D = 1, the logistic metric; the benchmark's pool uses D = 1 on the
qbank side too. Settings are catsim's fastest legitimate ones for this workload:
``FixedPointInitializer(0.0)``, ``MaxInfoSelector()`` (r_max = 1, no exposure control),
``NumericalSearchEstimator()`` (its only and default estimator: bounded Brent MLE with Dodd's
heuristic for constant response vectors), ``TestLengthStopper(max_items=L)`` (the plain
fixed-length stopper), ``verbose=False`` (no progress bar).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from catsim.estimation import NumericalSearchEstimator
from catsim.initialization import FixedPointInitializer
from catsim.item_bank import ItemBank
from catsim.selection import MaxInfoSelector
from catsim.simulation import Simulator
from catsim.stopping import TestLengthStopper


def run_once(bank_params: np.ndarray, theta: np.ndarray, length: int, seed: int):
    """One catsim simulation on a fresh ItemBank and Simulator; returns (simulator, wall s, CPU s)."""
    bank = ItemBank(bank_params.copy())
    simulator = Simulator(bank, theta, seed=seed)
    cpu_start = time.process_time()
    start = time.perf_counter()
    simulator.simulate(
        initializer=FixedPointInitializer(0.0),
        selector=MaxInfoSelector(),
        estimator=NumericalSearchEstimator(),
        stopper=TestLengthStopper(max_items=length),
        verbose=False,
    )
    wall = time.perf_counter() - start
    return simulator, wall, time.process_time() - cpu_start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", help="file with arrays a, b, c (n_items,) and theta (n_examinees,)")
    parser.add_argument("--length", type=int, required=True, help="fixed test length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="catsim Simulator seed (response draws)")
    args = parser.parse_args(argv)

    data = np.load(args.npz)
    # catsim's item matrix: columns a, b, c (d = 1 is added by ItemBank's normalisation).
    bank_params = np.column_stack([data["a"], data["b"], data["c"]]).astype(float)
    theta = np.asarray(data["theta"], dtype=float)

    wall, cpu, durations = [], [], []
    simulator = None
    for _ in range(args.repeats):
        simulator, seconds, cpu_seconds = run_once(bank_params, theta, args.length, args.seed)
        wall.append(seconds)
        cpu.append(cpu_seconds)
        durations.append(simulator.duration)

    counts = np.zeros(bank_params.shape[0], dtype=np.int64)
    for items in simulator.administered_items:
        np.add.at(counts, np.asarray(items, dtype=np.intp), 1)
    result = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "catsim_duration": durations,
        "theta_hat": [float(x) for x in simulator.latest_estimations],
        "administration_count": counts.tolist(),
        "test_length": [len(items) for items in simulator.administered_items],
        "catsim_rmse": float(simulator.rmse),
        "catsim_bias": float(simulator.bias),
        "catsim_overlap": float(simulator.overlap_rate),
        "settings": {
            "initializer": "FixedPointInitializer(0.0)",
            "selector": "MaxInfoSelector(r_max=1)",
            "estimator": str(NumericalSearchEstimator()),
            "stopper": f"TestLengthStopper(max_items={args.length})",
        },
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
