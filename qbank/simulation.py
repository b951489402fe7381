"""Vectorized CAT simulation over examinees, chunked for bounded memory.

Each test step runs once for all examinees of a chunk: one call of
:func:`qbank.selection.select_next`, one vectorized response draw, one posterior update.
Chunks are independent (each has its own generator from ``rng.spawn``) and return counts
that add, so the same chunk function could run on a distributed engine.

Random streams, for replay: the master generator draws the true abilities (when not given),
then spawns one child per chunk; each child draws, in this order, the per-test exposure
uniforms ``(n, n_items)`` (exposure-controlled rules only), the response uniforms
``(n, max_length)`` and the per-step uniforms ``(n, max_length)`` (randomesque only).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from qbank.estimation import EAP, eap_from_posterior
from qbank.irt import probability
from qbank.pool import ItemPool
from qbank.selection import InformationIndex, Selector, exposure_draws, select_next
from qbank.stopping import FixedLength

__all__ = ["DEFAULT_THETA_BINS", "SimulationResult", "draw_abilities", "simulate"]

DEFAULT_THETA_BINS = np.array([-np.inf, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, np.inf])
_CELLS_PER_CHUNK = (
    300_000  # examinee x item cells per chunk: small enough to stay in cache (measured fastest)
)


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
class _Counts:
    """Additive per-chunk tallies."""

    selections: np.ndarray
    administrations: np.ndarray
    bins: np.ndarray  # (n_bins, 5): n, sum error, sum squared error, sum se, sum length
    pool_exhausted: int = 0
    # (n_items, n_strata) tallies by true-theta stratum, for conditional exposure control
    stratum_selections: np.ndarray | None = None
    stratum_administrations: np.ndarray | None = None
    stratum_examinees: np.ndarray | None = None
    # (n_items, n_strata, n_strata): by true stratum and by the stratum of the current estimate
    # when the item was selected (the K a conditional selector applied)
    cross_selections: np.ndarray | None = None
    cross_administrations: np.ndarray | None = None

    def __iadd__(self, other):
        self.selections += other.selections
        self.administrations += other.administrations
        if self.stratum_selections is not None:
            self.stratum_selections += other.stratum_selections
            self.stratum_administrations += other.stratum_administrations
            self.stratum_examinees += other.stratum_examinees
            self.cross_selections += other.cross_selections
            self.cross_administrations += other.cross_administrations
        self.bins += other.bins
        self.pool_exhausted += other.pool_exhausted
        return self


def _simulate_chunk(pool, theta, stopping, selector, estimator, rng, index, theta_bins, strata_cuts):
    """Run one chunk of examinees through the whole test (validation assumed)."""
    n, n_items = theta.shape[0], pool.n_items
    by_stratum = strata_cuts is not None
    if by_stratum:
        n_strata = strata_cuts.size + 1
        true_stratum = np.searchsorted(strata_cuts, theta, side="right")
        stratum_sel = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
        stratum_adm = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
    max_length = stopping.max_length
    draws = exposure_draws(rng, n, n_items) if selector.uses_exposure_draws else None
    response_draws = rng.random((n, max_length))
    step_draws = rng.random((n, max_length)) if selector.rule == "randomesque" else None

    available = np.ones((n, n_items), dtype=bool)
    item_dtype = np.int16 if n_items < np.iinfo(np.int16).max else np.int32
    administered = np.full((n, max_length), -1, dtype=item_dtype)
    responses = np.full((n, max_length), -1, dtype=np.int8)
    length = np.zeros(n, dtype=np.int32)
    selections = np.zeros(n_items, dtype=np.int64)
    administrations = np.zeros(n_items, dtype=np.int64)

    incremental = isinstance(estimator, EAP)
    if incremental:
        grid = estimator.grid
        p_table = probability(grid, pool.a, pool.b, pool.c, pool.D).T  # (n_items, n_points)
        posterior = np.tile(estimator.prior, (n, 1))
        theta_hat, se = eap_from_posterior(posterior, grid)
    else:
        prior_mean = getattr(estimator, "prior_mean", 0.0)
        theta_hat = np.full(n, prior_mean)
        se = np.full(n, getattr(estimator, "prior_sd", 1.0))

    active = np.arange(n)
    exhausted = 0
    for step in range(max_length):
        active = active[~stopping.done(length[active], se[active])]
        if active.size == 0:
            break
        everyone = active.size == n
        rows = slice(None) if everyone else active
        selection = select_next(
            pool,
            theta_hat[rows],
            available[rows],
            selector=selector,
            position=step,
            test_length=max_length,
            exposure_draws=None if draws is None else draws[rows],
            step_draws=None if step_draws is None else step_draws[rows, step],
            index=index,
        )
        if by_stratum:  # keyed (true stratum, stratum of the estimate this step used, item)
            estimate_stratum = np.searchsorted(strata_cuts, theta_hat[rows], side="right")
            cell_of = (true_stratum[active] * n_strata + estimate_stratum) * n_items
        if selection.withdrawn_rows.size:
            available[active[selection.withdrawn_rows], selection.withdrawn_items] = False
            selections += np.bincount(selection.withdrawn_items, minlength=n_items)
            if by_stratum:
                stratum_sel += np.bincount(
                    cell_of[selection.withdrawn_rows] + selection.withdrawn_items, minlength=stratum_sel.size
                )
        got = selection.item >= 0
        if not got.all():  # Sympson-Hetter rejected every remaining item: the test ends here.
            exhausted += int((~got).sum())
        who, item = active[got], selection.item[got]
        active = who
        available[who, item] = False
        counts = np.bincount(item, minlength=n_items)
        selections += counts
        administrations += counts
        if by_stratum:
            cell_counts = np.bincount(cell_of[got] + item, minlength=stratum_sel.size)
            stratum_sel += cell_counts
            stratum_adm += cell_counts
        p_true = pool.c[item] + (1.0 - pool.c[item]) * expit(
            pool.D[item] * pool.a[item] * (theta[who] - pool.b[item])
        )
        correct = response_draws[who, step] < p_true
        administered[who, length[who]] = item
        responses[who, length[who]] = correct
        length[who] += 1
        if incremental:
            likelihood = np.where(correct[:, None], p_table[item], 1.0 - p_table[item])
            updated = posterior[who] * likelihood
            posterior[who] = updated / updated.max(axis=1, keepdims=True)
            theta_hat[who], se[who] = eap_from_posterior(posterior[who], grid)
        else:
            t = int(length[who].max())
            cols = administered[who, :t].astype(np.intp)
            answered = cols >= 0
            safe = np.where(answered, cols, 0)
            resp = np.where(answered, responses[who, :t], np.nan).astype(float)
            theta_hat[who], se[who] = estimator.estimate(
                pool.a[safe], pool.b[safe], pool.c[safe], pool.D[safe], resp
            )

    error = theta_hat - theta
    bin_of = np.clip(np.searchsorted(theta_bins, theta, side="right") - 1, 0, theta_bins.size - 2)
    n_bins = theta_bins.size - 1
    bins = np.stack(
        [
            np.bincount(bin_of, minlength=n_bins).astype(float),
            np.bincount(bin_of, weights=error, minlength=n_bins),
            np.bincount(bin_of, weights=error**2, minlength=n_bins),
            np.bincount(bin_of, weights=se, minlength=n_bins),
            np.bincount(bin_of, weights=length, minlength=n_bins),
        ],
        axis=1,
    )
    per_examinee = (theta_hat, se, length, administered, responses)
    counts = _Counts(selections, administrations, bins, exhausted)
    if by_stratum:
        counts.cross_selections = stratum_sel.reshape(n_strata, n_strata, n_items).transpose(2, 0, 1)
        counts.cross_administrations = stratum_adm.reshape(n_strata, n_strata, n_items).transpose(2, 0, 1)
        counts.stratum_selections = counts.cross_selections.sum(axis=2)
        counts.stratum_administrations = counts.cross_administrations.sum(axis=2)
        counts.stratum_examinees = np.bincount(true_stratum, minlength=n_strata)
    return counts, per_examinee


@dataclass
class SimulationResult:
    """What a simulation produced; DataFrames for people, arrays for programs.

    Attributes
    ----------
    pool : ItemPool
    theta, theta_hat, se : ndarray of shape (n_examinees,)
    length : ndarray of shape (n_examinees,)
    administered : ndarray of shape (n_examinees, max_length)
        Pool positions in administration order, -1 after the end of the test.
    responses : ndarray of shape (n_examinees, max_length)
        1/0, -1 after the end of the test.
    selection_count, administration_count : ndarray of shape (n_items,)
    settings : dict
    wall_seconds : float
        Time of the simulation itself (no start-up, no I/O).
    """

    pool: ItemPool
    theta: np.ndarray
    theta_hat: np.ndarray
    se: np.ndarray
    length: np.ndarray
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
        return common / float(self.length.mean())

    @property
    def summary(self) -> dict:
        if self._summary is None:
            error = self.theta_hat - self.theta
            rate = self.exposure_rate
            out = {
                "n_examinees": self.n_examinees,
                "n_items": self.pool.n_items,
                "bias": float(error.mean()),
                "rmse": float(np.sqrt((error**2).mean())),
                "mean_se": float(self.se.mean()),
                "mean_length": float(self.length.mean()),
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
        """Responses in the service's long format: ``person_id, item_id, response``."""
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
        """Write summary.json, exposure.csv, conditional.csv, examinees.parquet and PNG plots."""
        from qbank import plots

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "summary": out / "summary.json",
            "exposure": out / "exposure.csv",
            "conditional": out / "conditional.csv",
            "examinees": out / "examinees.parquet",
        }
        paths["summary"].write_text(json.dumps(self.summary, indent=2, default=_json_default) + "\n")
        self.items[["selection_rate", "exposure_rate"]].reset_index().to_csv(paths["exposure"], index=False)
        self.conditional.to_csv(paths["conditional"], index=False)
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
    strata_cuts=None,
    progress: bool = False,
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
        Examinees per chunk (default: about 300,000 examinee x item cells, which keeps
        the per-step working set in cache: measured fastest on pools of 500-1000 items).
    exposure_target : float, optional
        Rate against which ``items_over_target`` is counted.
    theta_bins : array_like, optional
        Edges of the true-theta bins for conditional bias/RMSE.
    keep_examinees : bool
        Keep per-examinee item sequences (turn off for very large runs).
    strata_cuts : array_like, optional
        Cut points of true-theta strata; selections and administrations are then also
        tallied per (item, stratum) (see :meth:`SimulationResult.stratum_rates`).
    progress : bool
        Show a progress bar over chunks.

    Returns
    -------
    SimulationResult
    """
    if not isinstance(pool, ItemPool):
        raise TypeError("pool must be a qbank.ItemPool (see qbank.load_pool)")
    stopping = stopping or FixedLength(30)
    selector = selector or Selector("max_info")
    estimator = estimator or EAP()
    selector.check_pool(pool)
    if stopping.max_length > pool.n_items:
        raise ValueError(f"test length {stopping.max_length} exceeds the pool's {pool.n_items} items")
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

    start = time.perf_counter()
    bounds = getattr(estimator, "bounds", (-4.0, 4.0))
    index = None
    if selector.rule != "a_stratified":
        index = InformationIndex.tiers(pool, stopping.max_length + max(selector.depth, 10), bounds=bounds)
    totals = None
    parts = []
    chunks = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="simulating", unit="chunk", total=n_chunks)
    for k in chunks:
        lo, hi = k * chunk_size, min((k + 1) * chunk_size, n_total)
        counts, per_examinee = _simulate_chunk(
            pool, theta[lo:hi], stopping, selector, estimator, children[k], index, theta_bins, strata_cuts
        )
        if totals is None:
            totals = counts
        else:
            totals += counts
        if not keep_examinees:
            per_examinee = (*per_examinee[:3], None, None)
        parts.append(per_examinee)
    wall = time.perf_counter() - start

    theta_hat, se, length = (np.concatenate([p[i] for p in parts]) for i in range(3))
    administered = responses = None
    if keep_examinees:
        administered = np.concatenate([p[3] for p in parts])
        responses = np.concatenate([p[4] for p in parts])
    settings = {
        "pool": pool.name,
        "pool_sha256": pool.sha256(),
        "selector": selector.to_dict(),
        "estimator": type(estimator).__name__.lower(),
        "stopping": stopping.to_dict(),
        "chunk_size": int(chunk_size),
    }
    return SimulationResult(
        pool,
        theta,
        theta_hat,
        se,
        length,
        administered,
        responses,
        totals.selections,
        totals.administrations,
        theta_bins,
        totals.bins,
        totals.pool_exhausted,
        settings,
        wall,
        exposure_target,
        strata_cuts,
        totals.stratum_selections,
        totals.stratum_administrations,
        totals.stratum_examinees,
        totals.cross_selections,
        totals.cross_administrations,
    )
