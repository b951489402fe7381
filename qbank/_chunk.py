"""The simulator's kernel: one chunk of examinees through a whole test, and one task (a few
chunks in a row) returning counts that add. Pure functions of their arguments, so the same code
runs in-process or as Dask tasks (:mod:`qbank.scale_out`); validation is :func:`qbank.simulate`'s."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from qbank.estimation import EAP, EDGE_SHARE
from qbank.irt import probability, probability_elementwise
from qbank.polytomous import (
    DICHOTOMOUS,
    GRM,
    category_probabilities,
    gpcm_probabilities,
    grm_probabilities,
)
from qbank.rules import FirstItem, first_estimate
from qbank.selection import Selector, exposure_draws, select_next


@dataclass
class _Counts:
    """Additive integer tallies: exact in any order of addition (the float bin sums are folded
    separately, in chunk order, so that a result never depends on where its chunks ran)."""

    selections: np.ndarray
    administrations: np.ndarray
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
        self.pool_exhausted += other.pool_exhausted
        return self


def _estimate_from_history(pool, estimator, administered, responses, rows):
    """Estimate from the whole answer history of ``rows`` (validation assumed)."""
    t = int((administered[rows] >= 0).sum(axis=1).max())
    cols = administered[rows, :t].astype(np.intp)
    answered = cols >= 0
    safe = np.where(answered, cols, 0)
    resp = np.where(answered, responses[rows, :t], np.nan).astype(float)
    categories = {}
    if pool.is_polytomous:
        categories = {"model": pool.item_model[safe], "thresholds": pool.thresholds[safe]}
    return estimator.estimate(pool.a[safe], pool.b[safe], pool.c[safe], pool.D[safe], resp, **categories)


def _category_scores(pool, theta, item, draws):
    """Category scores drawn at the true ``theta`` for the items given, one uniform each:
    ``X = #{k >= 1 : u < P(X >= k)}``, which scores ``k`` with probability ``P_k`` and is the
    dichotomous rule ``u < P`` for a dichotomous item (the same draw gives the same answer)."""
    codes = pool.item_model[item]
    scores = np.zeros(item.size, dtype=np.intp)
    for code in np.unique(codes).tolist():
        rows = np.flatnonzero(codes == code)
        chosen = item[rows]
        if code == DICHOTOMOUS:
            p = probability_elementwise(
                theta[rows], pool.a[chosen], pool.b[chosen], pool.c[chosen], pool.D[chosen]
            )
            scores[rows] = draws[rows] < p
            continue
        kernel = grm_probabilities if code == GRM else gpcm_probabilities
        p = kernel(theta[rows], pool.a[chosen], pool.thresholds[chosen], pool.D[chosen])  # (n, M)
        at_least = np.cumsum(p[:, ::-1], axis=1)[:, ::-1]  # P(X >= k), k = 0 .. M-1
        scores[rows] = (draws[rows, None] < at_least[:, 1:]).sum(axis=1)
    return scores


@functools.lru_cache(maxsize=8)
def _category_table(pool, estimator):
    """``P(X = k | grid point)`` of every item on the EAP grid: (n_items * 2, n_points), correct
    rows then wrong, and None for a dichotomous pool; rows ``item * M + k`` and ``M`` otherwise.
    Computed once per (pool, grid) rather than per chunk (both immutable; read-only)."""
    grid = estimator.grid
    if not pool.is_polytomous:
        p_table = probability(grid, pool.a, pool.b, pool.c, pool.D).T  # (n_items, n_points)
        table = np.concatenate([p_table, 1.0 - p_table])  # correct rows, then wrong
        table.setflags(write=False)
        return table, None
    return _polytomous_table(pool, estimator)


@functools.lru_cache(maxsize=8)
def _polytomous_table(pool, estimator):
    """The mixed pool's table, computed once per (pool, grid) rather than per chunk (both immutable)."""
    grid = estimator.grid
    table = category_probabilities(
        grid[:, None], pool.a, pool.b, pool.c, pool.D, pool.item_model, pool.thresholds
    )  # (n_points, n_items, M)
    n_categories = table.shape[2]
    table = np.ascontiguousarray(table.transpose(1, 2, 0)).reshape(-1, grid.size)
    table.setflags(write=False)
    return table, n_categories


def _simulate_chunk(
    pool, theta, stopping, selector, estimator, rng, index, theta_bins, strata_cuts, first_item
):
    """Run one chunk of examinees through the whole test (validation assumed).

    Returns integer counts, the float sums by true-theta bin ``(n_bins, 5)`` and the
    per-examinee arrays ``(theta_hat, se, length, administered, responses)``."""
    n, n_items = theta.shape[0], pool.n_items
    by_stratum = strata_cuts is not None
    if by_stratum:
        n_strata = strata_cuts.size + 1
        true_stratum = np.searchsorted(strata_cuts, theta, side="right")
        stratum_sel = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
        stratum_adm = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
    max_length = stopping.max_length
    draws = exposure_draws(rng, n, n_items) if selector.uses_exposure_draws else None
    # A classic Sympson-Hetter draw decides once per test whether an item may be administered.
    eligible = None
    if selector.rule == "sympson_hetter":
        eligible, draws = draws <= selector.sh_p, None
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
        likelihood_table, n_categories = _category_table(pool, estimator)
        moment_basis = np.stack([np.ones_like(grid), grid, grid * grid], axis=1)
        posterior = np.tile(estimator.prior, (n, 1))
    theta_hat, se = first_estimate(estimator, first_item, n)  # the service's start too

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
            eligible=None if eligible is None else eligible[rows],
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
        if pool.is_polytomous:
            score = _category_scores(pool, theta[who], item, response_draws[who, step])
        else:
            p_true = probability_elementwise(
                theta[who], pool.a[item], pool.b[item], pool.c[item], pool.D[item]
            )
            score = response_draws[who, step] < p_true
        administered[who, length[who]] = item
        responses[who, length[who]] = score
        length[who] += 1
        if incremental:
            rows_of = item + n_items * ~score if n_categories is None else item * n_categories + score
            if who.size == n:  # everyone still in the test (a fixed length): update in place
                updated = posterior
                updated *= likelihood_table[rows_of]
            else:
                updated = posterior[who] * likelihood_table[rows_of]
            # One product gives the total, first and second moments; normalising to sum 1 keeps
            # the weights far from underflow.
            moments = updated @ moment_basis
            total = moments[:, 0]
            updated /= total[:, None]
            if updated is not posterior:
                posterior[who] = updated
            mean = moments[:, 1] / total
            theta_hat[who] = mean
            se[who] = np.sqrt(np.maximum(moments[:, 2] / total - mean * mean, 0.0))
            # Rows whose posterior reaches the grid's ends are integrated on a wider grid.
            edge = who[np.maximum(updated[:, 0], updated[:, -1]) > EDGE_SHARE]
            if edge.size:
                theta_hat[edge], se[edge] = _estimate_from_history(
                    pool, estimator, administered, responses, edge
                )
        else:
            theta_hat[who], se[who] = _estimate_from_history(pool, estimator, administered, responses, who)

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
    counts = _Counts(selections, administrations, exhausted)
    if by_stratum:
        counts.cross_selections = stratum_sel.reshape(n_strata, n_strata, n_items).transpose(2, 0, 1)
        counts.cross_administrations = stratum_adm.reshape(n_strata, n_strata, n_items).transpose(2, 0, 1)
        counts.stratum_selections = counts.cross_selections.sum(axis=2)
        counts.stratum_administrations = counts.cross_administrations.sum(axis=2)
        counts.stratum_examinees = np.bincount(true_stratum, minlength=n_strata)
    return counts, bins, per_examinee


@dataclass(frozen=True)
class _Rules:
    """What every chunk of one run applies; sent to each worker once per run."""

    stopping: object
    selector: Selector
    estimator: object
    theta_bins: np.ndarray
    strata_cuts: np.ndarray | None
    chunk_size: int
    keep_estimates: bool
    keep_examinees: bool
    first_item: FirstItem


@dataclass
class _TaskResult:
    """What one task sends back: integer counts summed over its chunks, each chunk's bin sums
    ``(n_chunks, n_bins, 5)``, per-examinee arrays only when the caller keeps them."""

    counts: _Counts
    bins: np.ndarray
    per_examinee: tuple | None
    seconds: float


def _run_task(pool, index, rules: _Rules, theta, generators) -> _TaskResult:
    """The chunks of one task, in order (a pure function of its arguments)."""
    start = time.perf_counter()
    total, bins, parts = None, [], []
    for k, child in enumerate(generators):
        lo = k * rules.chunk_size
        counts, chunk_bins, per_examinee = _simulate_chunk(
            pool,
            theta[lo : lo + rules.chunk_size],
            rules.stopping,
            rules.selector,
            rules.estimator,
            child,
            index,
            rules.theta_bins,
            rules.strata_cuts,
            rules.first_item,
        )
        if total is None:
            total = counts
        else:
            total += counts
        bins.append(chunk_bins)
        if rules.keep_estimates:
            parts.append(per_examinee if rules.keep_examinees else per_examinee[:3])
    kept = None
    if parts:
        kept = tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return _TaskResult(total, np.stack(bins), kept, time.perf_counter() - start)
