"""Vectorized CAT simulation over examinees, chunked for bounded memory.

Each test step runs once for all examinees of a chunk: one call of
:func:`qbank.selection.select_next`, one vectorized response draw, one posterior update.
Chunks are independent (each has its own generator from ``rng.spawn``) and return counts
that add; a few consecutive chunks make a task (:mod:`qbank._chunk`), and the tasks run in
this process or, given a Dask client, on a cluster (:mod:`qbank.scale_out`). Integer counts
add exactly in any order and the float sums are folded in chunk order, so the result is the
same bit for bit wherever the tasks ran.

Random streams, for replay: the master generator draws the true abilities (when not given),
then spawns one child per chunk; each child draws, in this order, the per-test exposure
uniforms ``(n, n_items)`` (exposure-controlled rules only), the response uniforms
``(n, max_length)`` and the per-step uniforms ``(n, max_length)`` (randomesque only).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from qbank._chunk import _Rules, _run_task, _TaskResult
from qbank.estimation import EAP, MLE
from qbank.pool import ItemPool
from qbank.rules import FirstItem
from qbank.scale_out import Task, executor_for
from qbank.selection import InformationIndex, Selector
from qbank.stopping import FixedLength

__all__ = [
    "DEFAULT_THETA_BINS",
    "SimulationPlan",
    "SimulationResult",
    "draw_abilities",
    "plan_simulation",
    "run_simulations",
    "simulate",
]

DEFAULT_THETA_BINS = np.array([-np.inf, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, np.inf])
# Examinee x item cells per chunk. A chunk is the unit of randomness (its own generator), so this
# fixes results; a task runs a few chunks' test steps together (qbank._chunk._CELLS_PER_BATCH).
_CELLS_PER_CHUNK = 300_000
# Examinee x test-step work per task: about 0.3 s on one core for the demo pool, so the
# scheduler's few milliseconds per task stay around 1 %, while memory stays one batch's.
_EXAMINEE_STEPS_PER_TASK = 150_000
_TASKS_PER_SLOT = 4


def draw_abilities(n_examinees: int, distribution: str = "normal", params=(0.0, 1.0), rng=None) -> np.ndarray:
    """True abilities: ``normal`` (mean, sd) or ``uniform`` (low, high)."""
    rng = np.random.default_rng(rng)
    if n_examinees < 1:
        raise ValueError(f"n_examinees must be >= 1, got {n_examinees}")
    if distribution == "normal":
        return rng.normal(params[0], params[1], n_examinees)
    if distribution == "uniform":
        return rng.uniform(params[0], params[1], n_examinees)
    raise ValueError(f"theta distribution must be 'normal' or 'uniform', got {distribution!r}")


@dataclass
class SimulationResult:
    """What a simulation produced; DataFrames for people, arrays for programs.

    Attributes
    ----------
    pool : ItemPool
    theta : ndarray of shape (n_examinees,)
    theta_hat, se, length : ndarray of shape (n_examinees,) or None
        None when run with ``keep_estimates=False`` (the summary then comes from the sums).
    administered : ndarray of shape (n_examinees, max_length) or None
        Pool positions in administration order, -1 after the end of the test.
    responses : ndarray of shape (n_examinees, max_length)
        Category scores ``0 .. m-1`` (1/0 for a dichotomous item), -1 after the end of the test.
    selection_count, administration_count : ndarray of shape (n_items,)
    settings : dict
    wall_seconds : float
        Time of the simulation itself (no start-up, no I/O).
    """

    pool: ItemPool
    theta: np.ndarray
    theta_hat: np.ndarray | None
    se: np.ndarray | None
    length: np.ndarray | None
    administered: np.ndarray | None
    responses: np.ndarray | None
    selection_count: np.ndarray
    administration_count: np.ndarray
    theta_bins: np.ndarray
    bin_totals: np.ndarray
    pool_exhausted: int
    settings: dict
    wall_seconds: float
    exposure_target: float | None = None
    strata_cuts: np.ndarray | None = None
    stratum_selection_count: np.ndarray | None = None
    stratum_administration_count: np.ndarray | None = None
    stratum_examinee_count: np.ndarray | None = None
    # (n_items, n_strata, n_strata): selections / administrations by true stratum (axis 1) and by
    # the stratum of the current estimate when the item was selected (axis 2)
    cross_selection_count: np.ndarray | None = None
    cross_administration_count: np.ndarray | None = None
    _summary: dict | None = field(default=None, repr=False)

    @property
    def n_examinees(self) -> int:
        return int(self.theta.shape[0])

    @property
    def exposure_rate(self) -> np.ndarray:
        """Share of examinees administered each item, shape (n_items,)."""
        return self.administration_count / self.n_examinees

    def stratum_rates(self) -> tuple[np.ndarray, np.ndarray]:
        """P(S_i | stratum j) and P(A_i | stratum j), each (n_items, n_strata), by TRUE theta
        stratum (``strata_cuts`` given to :func:`simulate`); NaN for an empty stratum."""
        if self.strata_cuts is None:
            raise ValueError("run simulate(..., strata_cuts=[...]) to tally by theta stratum")
        with np.errstate(invalid="ignore", divide="ignore"):
            n = np.where(self.stratum_examinee_count > 0, self.stratum_examinee_count, np.nan)
            return self.stratum_selection_count / n, self.stratum_administration_count / n

    @property
    def selection_rate(self) -> np.ndarray:
        """Share of examinees for whom each item was selected (administered or withdrawn)."""
        return self.selection_count / self.n_examinees

    def overlap_rate(self) -> float:
        """Mean share of items two random examinees have in common.

        ``sum_i n_i (n_i - 1) / (N (N - 1))`` items in common per pair (n_i = examinees who got
        item i), divided by the mean test length (exact for fixed-length tests;
        Chen, Ankenmann & Spray 2003).
        """
        n = self.n_examinees
        if n < 2:
            return float("nan")
        counts = self.administration_count.astype(float)
        common = float((counts * (counts - 1)).sum()) / (n * (n - 1))
        return common / self._means()["mean_length"]

    def _means(self) -> dict:
        """Bias, RMSE, mean SE and mean length: from the per-examinee arrays when kept, else
        from the additive sums (same values up to the order of summation)."""
        if self.theta_hat is not None:
            error = self.theta_hat - self.theta
            return {
                "bias": float(error.mean()),
                "rmse": float(np.sqrt((error**2).mean())),
                "mean_se": float(self.se.mean()),
                "mean_length": float(self.length.mean()),
            }
        _, s_err, s_sq, s_se, s_len = self.bin_totals.sum(axis=0) / self.n_examinees
        return {
            "bias": float(s_err),
            "rmse": float(np.sqrt(s_sq)),
            "mean_se": float(s_se),
            "mean_length": float(s_len),
        }

    @property
    def summary(self) -> dict:
        if self._summary is None:
            rate = self.exposure_rate
            out = {
                "n_examinees": self.n_examinees,
                "n_items": self.pool.n_items,
                **self._means(),
                "max_exposure": float(rate.max()),
                "items_never_used": int((self.administration_count == 0).sum()),
                "overlap_rate": self.overlap_rate(),
                "tests_ended_pool_exhausted": int(self.pool_exhausted),
                "wall_seconds": float(self.wall_seconds),
            }
            if self.exposure_target is not None:
                out["exposure_target"] = float(self.exposure_target)
                out["items_over_target"] = int((rate > self.exposure_target).sum())
            out.update({k: v for k, v in self.settings.items() if k not in out})
            self._summary = out
        return self._summary

    @property
    def items(self) -> pd.DataFrame:
        """Per item: parameters, selection/administration counts and rates."""
        frame = self.pool.to_frame().set_index("item_id")
        frame["selection_count"] = self.selection_count
        frame["administration_count"] = self.administration_count
        frame["selection_rate"] = self.selection_rate
        frame["exposure_rate"] = self.exposure_rate
        return frame

    @property
    def examinees(self) -> pd.DataFrame:
        """Per examinee: true theta, estimate, SE, length and the item ids administered."""
        if self.theta_hat is None:
            raise ValueError("this result was run with keep_estimates=False")
        frame = pd.DataFrame(
            {"theta": self.theta, "theta_hat": self.theta_hat, "se": self.se, "length": self.length},
            index=pd.RangeIndex(self.n_examinees, name="examinee_id"),
        )
        if self.administered is not None:
            ids = self.pool.item_id
            frame["items"] = [list(ids[row[:k]]) for row, k in zip(self.administered, self.length)]
        return frame

    @property
    def conditional(self) -> pd.DataFrame:
        """Bias, RMSE, mean SE and mean length by true-theta bin."""
        n, s_err, s_sq, s_se, s_len = self.bin_totals.T
        with np.errstate(invalid="ignore", divide="ignore"):
            frame = pd.DataFrame(
                {
                    "theta_low": self.theta_bins[:-1],
                    "theta_high": self.theta_bins[1:],
                    "n": n.astype(int),
                    "bias": s_err / n,
                    "rmse": np.sqrt(s_sq / n),
                    "mean_se": s_se / n,
                    "mean_length": s_len / n,
                }
            )
        return frame[frame["n"] > 0].reset_index(drop=True)

    def responses_long(self) -> pd.DataFrame:
        """Responses in the service's long format: ``person_id, item_id, response`` (the category
        score, 0/1 for a dichotomous item)."""
        if self.administered is None:
            raise ValueError("this result was run with keep_examinees=False")
        answered = self.administered >= 0
        person, position = np.nonzero(answered)
        return pd.DataFrame(
            {
                "person_id": person,
                "item_id": self.pool.item_id[self.administered[person, position].astype(np.intp)],
                "response": self.responses[person, position].astype(np.int8),
            }
        )

    def to_dir(self, out) -> dict:
        """Write summary.json, exposure.csv, conditional.csv, examinees.parquet (when the estimates
        were kept) and PNG plots."""
        from qbank import plots

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "summary": out / "summary.json",
            "exposure": out / "exposure.csv",
            "conditional": out / "conditional.csv",
        }
        if self.theta_hat is not None:
            paths["examinees"] = out / "examinees.parquet"
        paths["summary"].write_text(json.dumps(self.summary, indent=2, default=_json_default) + "\n")
        self.items[["selection_rate", "exposure_rate"]].reset_index().to_csv(paths["exposure"], index=False)
        self.conditional.to_csv(paths["conditional"], index=False)
        if "examinees" in paths:
            _write_examinees(self, paths["examinees"])
        paths["exposure_plot"] = plots.exposure_sorted(
            {"this run": self.exposure_rate}, out / "exposure_sorted.png", target=self.exposure_target
        )
        paths["conditional_plot"] = plots.conditional_accuracy(
            {"this run": self.conditional}, out / "conditional.png"
        )
        return paths


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def _write_examinees(result: SimulationResult, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {
        "examinee_id": pa.array(np.arange(result.n_examinees)),
        "theta": pa.array(result.theta),
        "theta_hat": pa.array(result.theta_hat),
        "se": pa.array(result.se),
        "length": pa.array(result.length),
    }
    if result.administered is not None:
        answered = result.administered >= 0
        flat = result.administered[answered].astype(np.int32)
        offsets = np.concatenate([[0], np.cumsum(result.length)]).astype(np.int32)
        item_ids = pa.DictionaryArray.from_arrays(pa.array(flat), pa.array(result.pool.item_id.astype(str)))
        columns["items"] = pa.ListArray.from_arrays(pa.array(offsets), item_ids.cast(pa.string()))
        columns["responses"] = pa.ListArray.from_arrays(
            pa.array(offsets), pa.array(result.responses[answered].astype(np.int8))
        )
    pq.write_table(pa.table(columns), path)


def simulate(
    pool: ItemPool,
    *,
    n_examinees: int | None = None,
    theta=None,
    theta_distribution: str = "normal",
    theta_params=(0.0, 1.0),
    stopping=None,
    selector: Selector | None = None,
    estimator=None,
    rng=None,
    chunk_size: int | None = None,
    exposure_target: float | None = None,
    theta_bins=None,
    keep_examinees: bool = True,
    keep_estimates: bool = True,
    strata_cuts=None,
    first_item=None,
    rules=None,
    progress=False,
    client=None,
) -> SimulationResult:
    """Simulate computerized adaptive tests for many examinees at once.

    Parameters
    ----------
    pool : ItemPool
    n_examinees : int, optional
        Number of simulees drawn from ``theta_distribution`` (when ``theta`` is not given).
    theta : array_like of shape (n_examinees,), optional
        True abilities to use instead of drawing them.
    theta_distribution : {'normal', 'uniform'}
    theta_params : tuple
        (mean, sd) or (low, high).
    stopping : FixedLength or StandardError, default FixedLength(30)
    selector : Selector, default Selector('max_info')
    estimator : EAP, MAP or MLE, default EAP()
    rng : int or numpy.random.Generator
        Seed; the same seed gives the same result bit for bit.
    chunk_size : int, optional
        Examinees per chunk, each with its own generator (default: about 300,000 examinee x item
        cells). A task runs several chunks' test steps together; that changes no result.
    exposure_target : float, optional
        Rate against which ``items_over_target`` is counted.
    theta_bins : array_like, optional
        Edges of the true-theta bins for conditional bias/RMSE.
    keep_examinees : bool
        Keep per-examinee item sequences and responses (turn off for very large runs).
    keep_estimates : bool
        Keep per-examinee estimates, SEs and lengths; with False (and ``keep_examinees=False``)
        only additive counts come back from the chunks and the summary is computed from them.
    strata_cuts : array_like, optional
        Cut points of true-theta strata; selections and administrations are then also
        tallied per (item, stratum) (see :meth:`SimulationResult.stratum_rates`).
    first_item : FirstItem, optional
        Where the first item is chosen (default: at the estimator's starting estimate).
    rules : CatRules, optional
        The complete rules (:func:`qbank.rules_from_bundle`, :func:`qbank.rules_from_settings`)
        instead of ``selector``, ``stopping``, ``estimator``, ``first_item`` and (unless given)
        ``exposure_target``.
    progress : bool or callable
        Show a progress bar over tasks (groups of chunks); a callable is called
        ``progress(done, n_tasks)`` as tasks finish instead.
    client : dask.distributed.Client or qbank.scale_out.LocalProcesses, optional
        Run the chunks as tasks on this Dask cluster or on forked processes of this machine (see
        docs/scale-out.md); the result is the same, bit for bit, as in-process. Default: in this
        process, without importing Dask.

    Returns
    -------
    SimulationResult
    """
    if rules is not None:
        if any(x is not None for x in (selector, stopping, estimator, first_item)):
            raise ValueError("give rules, or selector/stopping/estimator/first_item, not both")
        selector, stopping, estimator, first_item = (
            rules.selector,
            rules.stopping,
            rules.estimator,
            rules.first_item,
        )
        exposure_target = rules.exposure_target if exposure_target is None else exposure_target
    executor = executor_for(client)
    run = plan_simulation(
        pool,
        n_examinees=n_examinees,
        theta=theta,
        theta_distribution=theta_distribution,
        theta_params=theta_params,
        stopping=stopping,
        selector=selector,
        estimator=estimator,
        rng=rng,
        chunk_size=chunk_size,
        exposure_target=exposure_target,
        theta_bins=theta_bins,
        keep_examinees=keep_examinees,
        keep_estimates=keep_estimates,
        strata_cuts=strata_cuts,
        first_item=first_item,
        slots=executor.slots,
    )
    if callable(progress):
        return run_simulations([run], executor, on_task=progress)[0]
    return run_simulations([run], executor, progress="simulating" if progress else None)[0]


def run_simulations(
    runs: list, executor, progress: str | None = None, on_task=None
) -> list[SimulationResult]:
    """Run the tasks of several planned simulations together (one pool of tasks, so a study
    keeps every worker busy) and assemble each run's result; ``on_task(done, n_tasks)`` is
    called as tasks finish."""
    tasks, owner = [], []
    for r, run in enumerate(runs):
        tasks.extend(run.tasks)
        owner.extend([r] * len(run.tasks))
    outcomes = [[None] * len(run.tasks) for run in runs]
    offsets = np.cumsum([0] + [len(run.tasks) for run in runs])
    arrivals = [[] for _ in runs]
    for done, (i, outcome, arrival) in enumerate(executor.run(tasks, progress), start=1):
        if on_task is not None:
            on_task(done, len(tasks))
        r = owner[i]
        outcomes[r][i - offsets[r]] = outcome
        arrivals[r].append((arrival - outcome.seconds, arrival))
    results = []
    for run, parts, times in zip(runs, outcomes, arrivals):
        # elapsed from the start of the run's first task to its last result
        wall = max(t for _, t in times) - min(t for t, _ in times)
        results.append(run.assemble(parts, wall))
    return results


@dataclass
class SimulationPlan:
    """A validated simulation cut into tasks: built by :func:`plan_simulation`, run by
    :func:`run_simulations`. Task grouping never changes the result (see :class:`_Counts`)."""

    pool: ItemPool
    theta: np.ndarray
    rules: _Rules
    tasks: list
    exposure_target: float | None
    settings: dict

    def assemble(self, parts: list[_TaskResult], wall: float) -> SimulationResult:
        totals = parts[0].counts
        for part in parts[1:]:
            totals += part.counts
        chunk_bins = np.concatenate([part.bins for part in parts])
        bins = chunk_bins[0].copy()
        for chunk in chunk_bins[1:]:  # left fold in chunk order, as a sequential loop adds
            bins += chunk
        theta_hat = se = length = administered = responses = None
        if self.rules.keep_estimates:
            theta_hat, se, length = (np.concatenate([p.per_examinee[i] for p in parts]) for i in range(3))
        if self.rules.keep_examinees:
            administered, responses = (np.concatenate([p.per_examinee[i] for p in parts]) for i in (3, 4))
        return SimulationResult(
            self.pool,
            self.theta,
            theta_hat,
            se,
            length,
            administered,
            responses,
            totals.selections,
            totals.administrations,
            self.rules.theta_bins,
            bins,
            totals.pool_exhausted,
            self.settings,
            wall,
            self.exposure_target,
            self.rules.strata_cuts,
            totals.stratum_selections,
            totals.stratum_administrations,
            totals.stratum_examinees,
            totals.cross_selections,
            totals.cross_administrations,
        )


def plan_simulation(
    pool: ItemPool,
    *,
    n_examinees=None,
    theta=None,
    theta_distribution="normal",
    theta_params=(0.0, 1.0),
    stopping=None,
    selector=None,
    estimator=None,
    rng=None,
    chunk_size=None,
    exposure_target=None,
    theta_bins=None,
    keep_examinees=True,
    keep_estimates=True,
    strata_cuts=None,
    first_item=None,
    slots: int = 1,
) -> SimulationPlan:
    """Check the arguments of :func:`simulate` (same meaning), draw the true abilities, spawn one
    generator per chunk and group the chunks into tasks for ``slots`` worker threads."""
    if not isinstance(pool, ItemPool):
        raise TypeError("pool must be a qbank.ItemPool (see qbank.load_pool)")
    stopping = stopping or FixedLength(30)
    selector = selector or Selector("max_info")
    estimator = estimator or EAP()
    if isinstance(estimator, MLE) and estimator.dodd and estimator.b_range is None:
        estimator = dataclasses.replace(estimator, b_range=(float(pool.b.min()), float(pool.b.max())))
    selector.check_pool(pool)
    if stopping.max_length > pool.n_items:
        raise ValueError(f"test length {stopping.max_length} exceeds the pool's {pool.n_items} items")
    if keep_examinees and not keep_estimates:
        raise ValueError("keep_examinees=True needs keep_estimates=True")
    rng = np.random.default_rng(rng)
    if theta is None:
        if n_examinees is None:
            raise ValueError("give n_examinees or theta")
        theta = draw_abilities(n_examinees, theta_distribution, theta_params, rng)
    else:
        theta = np.asarray(theta, dtype=float).ravel()
        if theta.size == 0 or not np.all(np.isfinite(theta)):
            raise ValueError("theta must be a non-empty array of finite numbers")
    theta_bins = DEFAULT_THETA_BINS if theta_bins is None else np.asarray(theta_bins, dtype=float)
    if strata_cuts is not None:
        strata_cuts = np.asarray(strata_cuts, dtype=float).ravel()
        if np.any(np.diff(strata_cuts) <= 0):
            raise ValueError(f"strata_cuts must be increasing, got {strata_cuts.tolist()}")
    n_total = theta.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CELLS_PER_CHUNK // pool.n_items)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n_chunks = math.ceil(n_total / chunk_size)
    children = rng.spawn(n_chunks)

    bounds = getattr(estimator, "bounds", (-4.0, 4.0))
    index = None
    if selector.rule != "a_stratified":
        index = InformationIndex.tiers(pool, stopping.max_length + max(selector.depth, 10), bounds=bounds)
    first_item = first_item if isinstance(first_item, FirstItem) else FirstItem.from_dict(first_item)
    rules = _Rules(
        stopping,
        selector,
        estimator,
        theta_bins,
        strata_cuts,
        int(chunk_size),
        keep_estimates,
        keep_examinees,
        first_item,
    )
    # Tasks of about _EXAMINEE_STEPS_PER_TASK (scheduler overhead stays small), yet at least
    # _TASKS_PER_SLOT per worker thread when the run has that many chunks (load balance).
    by_cost = max(1, round(_EXAMINEE_STEPS_PER_TASK / (chunk_size * stopping.max_length)))
    per_task = max(1, min(by_cost, math.ceil(n_chunks / (_TASKS_PER_SLOT * max(1, slots)))))
    tasks = []
    for first in range(0, n_chunks, per_task):
        last = min(first + per_task, n_chunks)
        lo, hi = first * chunk_size, min(last * chunk_size, n_total)
        tasks.append(Task(_run_task, (pool, index, rules), (theta[lo:hi], children[first:last])))
    settings = {
        "pool": pool.name,
        "pool_sha256": pool.sha256(),
        "selector": selector.to_dict(),
        "estimator": type(estimator).__name__.lower(),
        "stopping": stopping.to_dict(),
        "first_item": first_item.to_dict(),
        "chunk_size": int(chunk_size),
    }
    return SimulationPlan(pool, theta, rules, tasks, exposure_target, settings)
