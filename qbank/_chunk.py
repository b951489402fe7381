"""The simulator's kernel: a batch of a few chunks of examinees through a whole test, and one
task (a few batches in a row) returning counts that add. Pure functions of their arguments, so the
same code runs in-process or as Dask tasks (:mod:`qbank.scale_out`); validation is
:func:`qbank.simulate`'s.

A chunk is the unit of randomness (its own generator) and of the float sums; a batch only runs the
test steps of its chunks together, so that numpy's per-call overhead (about 70 calls a step) is paid
once for several chunks. Everything a step computes is elementwise or per row, except the BLAS
product of the EAP moments and the estimators' own reductions, which run chunk by chunk on exactly
the rows a lone chunk would give them: a batch gives each chunk's result bit for bit."""

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

# Examinee x item cells a batch of chunks runs its test steps on together: numpy's per-call cost
# is shared by more rows, while the (rows, n_items) masks stay in the second-level cache (measured
# on the 1000-item issue-13 workload: 1,200,000 cells, i.e. 4 chunks of 300, fastest).
_CELLS_PER_BATCH = 1_200_000


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


def _chunk_slices(rows, bounds):
    """``(k, lo, hi)`` for each chunk ``k`` with rows in ``rows[lo:hi]`` (``rows`` sorted batch rows,
    ``bounds`` the chunks' first rows and the batch size)."""
    cut = np.searchsorted(rows, bounds)
    return [(k, lo, hi) for k, (lo, hi) in enumerate(zip(cut[:-1].tolist(), cut[1:].tolist())) if hi > lo]


def _estimate_by_chunk(pool, estimator, administered, responses, rows, bounds):
    """:func:`_estimate_from_history` chunk by chunk: an estimator's reductions (a BLAS product, MAP's
    Newton steps until every row given settled) depend on the rows given together, so each call
    gets the rows its chunk alone would give it."""
    theta_hat, se = np.empty(rows.size), np.empty(rows.size)
    for _, lo, hi in _chunk_slices(rows, bounds):
        theta_hat[lo:hi], se[lo:hi] = _estimate_from_history(
            pool, estimator, administered, responses, rows[lo:hi]
        )
    return theta_hat, se


def _simulate_batch(
    pool, theta, bounds, generators, stopping, selector, estimator, index, theta_bins, strata_cuts, first_item
):
    """Run a batch of chunks (rows ``bounds[k]:bounds[k + 1]`` drawing from ``generators[k]``) through
    the whole test together (validation assumed); each chunk's result is the one it gives alone.

    Returns the batch's integer counts, the float sums by true-theta bin per chunk
    ``(n_chunks, n_bins, 5)`` and the per-examinee arrays ``(theta_hat, se, length, administered,
    responses)``."""
    n, n_items = theta.shape[0], pool.n_items
    by_stratum = strata_cuts is not None
    if by_stratum:
        n_strata = strata_cuts.size + 1
        true_stratum = np.searchsorted(strata_cuts, theta, side="right")
        stratum_sel = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
        stratum_adm = np.zeros(n_items * n_strata * n_strata, dtype=np.int64)
    max_length = stopping.max_length
    # Each chunk's generator draws its streams in the documented order (qbank.simulation).
    draws = eligible = step_draws = None
    if selector.uses_exposure_draws:
        # A classic Sympson-Hetter draw decides once per test whether an item may be administered.
        if selector.rule == "sympson_hetter":
            eligible = np.empty((n, n_items), dtype=bool)
        else:
            draws = np.empty((n, n_items))
    response_draws = np.empty((n, max_length))
    if selector.rule == "randomesque":
        step_draws = np.empty((n, max_length))
    for k, rng in enumerate(generators):
        lo, hi = bounds[k], bounds[k + 1]
        if eligible is not None:
            np.less_equal(exposure_draws(rng, hi - lo, n_items), selector.sh_p, out=eligible[lo:hi])
        elif draws is not None:
            draws[lo:hi] = exposure_draws(rng, hi - lo, n_items)
        response_draws[lo:hi] = rng.random((hi - lo, max_length))
        if step_draws is not None:
            step_draws[lo:hi] = rng.random((hi - lo, max_length))

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
                updated *= likelihood_table.take(rows_of, axis=0)
            else:
                updated = posterior[who] * likelihood_table.take(rows_of, axis=0)
            # One product gives the total, first and second moments; normalising to sum 1 keeps
            # the weights far from underflow. The product runs per chunk: BLAS may sum a row in
            # another order when it is given more rows.
            moments = np.empty((who.size, 3))
            for _, lo, hi in _chunk_slices(who, bounds):
                np.matmul(updated[lo:hi], moment_basis, out=moments[lo:hi])
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
                theta_hat[edge], se[edge] = _estimate_by_chunk(
                    pool, estimator, administered, responses, edge, bounds
                )
        else:
            theta_hat[who], se[who] = _estimate_by_chunk(
                pool, estimator, administered, responses, who, bounds
            )

    error = theta_hat - theta
    bin_of = np.clip(np.searchsorted(theta_bins, theta, side="right") - 1, 0, theta_bins.size - 2)
    n_bins = theta_bins.size - 1
    bins = np.empty((len(generators), n_bins, 5))
    for k in range(len(generators)):  # each chunk's own sums, folded in chunk order by the caller
        part = slice(bounds[k], bounds[k + 1])
        of = bin_of[part]
        bins[k] = np.stack(
            [
                np.bincount(of, minlength=n_bins).astype(float),
                np.bincount(of, weights=error[part], minlength=n_bins),
                np.bincount(of, weights=error[part] ** 2, minlength=n_bins),
                np.bincount(of, weights=se[part], minlength=n_bins),
                np.bincount(of, weights=length[part], minlength=n_bins),
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
    """The chunks of one task, in order, a few at a time (a pure function of its arguments)."""
    start = time.perf_counter()
    n_chunks = len(generators)
    per_batch = max(1, _CELLS_PER_BATCH // (rules.chunk_size * pool.n_items))
    total, bins, parts = None, [], []
    for chunks in np.array_split(np.arange(n_chunks), -(-n_chunks // per_batch)):
        first, last = int(chunks[0]), int(chunks[-1]) + 1
        lo, hi = first * rules.chunk_size, min(last * rules.chunk_size, theta.shape[0])
        bounds = [k * rules.chunk_size for k in range(last - first)] + [hi - lo]
        counts, batch_bins, per_examinee = _simulate_batch(
            pool,
            theta[lo:hi],
            bounds,
            generators[first:last],
            rules.stopping,
            rules.selector,
            rules.estimator,
            index,
            rules.theta_bins,
            rules.strata_cuts,
            rules.first_item,
        )
        if total is None:
            total = counts
        else:
            total += counts
        bins.append(batch_bins)
        if rules.keep_estimates:
            parts.append(per_examinee if rules.keep_examinees else per_examinee[:3])
    kept = None
    if parts:
        kept = tuple(np.concatenate([p[i] for p in parts]) for i in range(len(parts[0])))
    return _TaskResult(total, np.concatenate(bins), kept, time.perf_counter() - start)
