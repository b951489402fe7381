"""The exact information index behind maximum-information selection (:mod:`qbank.selection`).

Item information over a small theta cell has a known range (3PL information is unimodal; GRM/GPCM
bounds in :mod:`qbank.polytomous`); the index keeps, per cell, the few items that can rank near
the top there, and a step evaluates information only where it can change the pick. Results are
those of the whole pool, bit for bit; :func:`qbank.selection.select_next` falls back to the whole
pool where the index cannot decide.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from qbank._selection_mixed import candidate_information, candidate_models
from qbank.irt import (
    information,
    information_elementwise,
    information_factors,
    information_from_factors,
    information_peak,
    logit,
)
from qbank.polytomous import DICHOTOMOUS, information_bounds
from qbank.pool import ItemPool

__all__ = ["InformationIndex"]


@dataclass(frozen=True, eq=False)
class InformationIndex:
    """Exact acceleration of maximum-information ranking.

    The theta range is cut into cells. For each cell it keeps the items that can rank among
    the ``depth`` most informative anywhere in the cell (3PL information is unimodal in
    theta, peaking at :func:`qbank.irt.information_peak`, so its minimum and maximum over a
    cell are known exactly; a GRM/GPCM item's may have several modes and is bounded by
    :func:`qbank.polytomous.information_bounds`), and ``outside_max``, the largest information any other item can
    reach in the cell. A step then evaluates information for those few candidates only; when
    the item it picks is more informative than ``outside_max``, no other item can outrank it,
    so the result is exactly the full-pool result. Rows where that check fails (many items
    already used or withdrawn) fall back to the whole pool.

    Cells with fewer candidates than the widest are padded with entries whose information is
    exactly 0 (``scale`` 0, ``c`` 1): never above ``outside_max`` (at least 1e-12), so a row can
    only rely on a padding entry by failing the check.

    ``bounds`` holds each candidate's information range over its cell (with the same slack), so
    a maximum-information step on a dichotomous pool computes information only for the
    candidates whose upper bound reaches the best lower bound among the usable ones
    (:func:`_pick_bounded`): no other candidate can be the pick or rank above it.
    """

    edges: np.ndarray
    candidates: np.ndarray
    outside_max: np.ndarray
    # Candidate parameters laid out per cell, so a step copies one contiguous block per row
    # instead of gathering scattered pool entries: (5, n_cells, width) holding D*a and b (the
    # logit), c and the factors of qbank.irt.information_factors (the information).
    parameters: np.ndarray
    # (2, n_cells, width): lower and upper bound of each candidate's information in its cell.
    bounds: np.ndarray
    # A mixed pool's candidate model codes (n_cells, width) and step-first thresholds
    # (M - 1, n_cells, width) (qbank._selection_mixed.candidate_models); None in a dichotomous pool.
    codes: np.ndarray | None = None
    steps: np.ndarray | None = None

    @classmethod
    def tiers(cls, pool: ItemPool, depth: int, bounds=(-4.0, 4.0)) -> tuple:
        """Indexes of depth ``depth`` and ``4 * depth`` (while shallower than half the pool):
        the deeper tier serves examinees who have used or been denied many top items.

        Cached per (pool, depth, bounds): pools are immutable, and iterative exposure control
        simulates the same pool many times."""
        return _cached_tiers(pool, int(depth), tuple(float(x) for x in bounds))

    @classmethod
    def build(cls, pool: ItemPool, depth: int, bounds=(-4.0, 4.0), n_cells: int = 400):
        depth = int(min(max(depth, 1), pool.n_items))
        edges = np.linspace(bounds[0], bounds[1], n_cells + 1)
        info_edges = information(edges, pool.a, pool.b, pool.c, pool.D)  # (n_cells + 1, n_items)
        low, high = info_edges[:-1], info_edges[1:]
        cell_min = np.minimum(low, high)
        peak = information_peak(pool.a, pool.b, pool.c, pool.D)
        peak_info = information_elementwise(peak, pool.a, pool.b, pool.c, pool.D)
        peak_inside = (peak >= edges[:-1, None]) & (peak <= edges[1:, None])
        cell_max = np.where(peak_inside, peak_info, np.maximum(low, high))
        if pool.is_polytomous:
            poly = np.flatnonzero(pool.item_model != DICHOTOMOUS)
            cell_min[:, poly], cell_max[:, poly] = information_bounds(
                edges, pool.a[poly], pool.D[poly], pool.item_model[poly], pool.thresholds[poly]
            )
        threshold = -np.partition(-cell_min, depth - 1, axis=1)[:, depth - 1]
        is_candidate = cell_max >= threshold[:, None]
        outside_max = np.where(is_candidate, -np.inf, cell_max).max(axis=1)
        width = int(is_candidate.sum(axis=1).max())
        order = np.argsort(~is_candidate, axis=1, kind="stable")[:, :width]
        valid = np.take_along_axis(is_candidate, order, axis=1)
        # A hair of slack so that rounding in the bounds can never make the check optimistic.
        outside_max = outside_max * (1.0 + 1e-9) + 1e-12
        order = order.astype(np.intp)
        bounds = np.stack(
            [
                np.where(valid, np.take_along_axis(cell_min, order, axis=1) * (1.0 - 1e-9) - 1e-12, 0.0),
                np.where(valid, np.take_along_axis(cell_max, order, axis=1) * (1.0 + 1e-9) + 1e-12, 0.0),
            ]
        )
        scale, one_minus_c = information_factors(pool.a, pool.c, pool.D)
        parameters = np.stack(
            [
                (pool.D * pool.a)[order],
                pool.b[order],
                np.where(valid, pool.c[order], 1.0),
                np.where(valid, scale[order], 0.0),
                np.where(valid, one_minus_c[order], 0.0),
            ]
        )
        if not pool.is_polytomous:
            return cls(edges, order, outside_max, parameters, bounds)
        return cls(edges, order, outside_max, parameters, bounds, *candidate_models(pool, order, valid))

    def cell_of(self, theta_hat) -> np.ndarray:
        """Cell index per estimate; -1 outside the indexed range."""
        cell = np.searchsorted(self.edges, theta_hat, side="right") - 1
        inside = (theta_hat >= self.edges[0]) & (theta_hat <= self.edges[-1])
        return np.where(inside, np.minimum(cell, self.edges.size - 2), -1)


@functools.lru_cache(maxsize=16)
def _cached_tiers(pool: ItemPool, depth: int, bounds: tuple) -> tuple:
    depths = [d for d in (depth, 4 * depth) if d < pool.n_items // 2] or [depth]
    return tuple(InformationIndex.build(pool, d, bounds) for d in depths)


def _pick_bounded(index, cells, theta_hat, candidates, available, eligible):
    """The maximum-information pick among an index's candidates (each by its own model), as
    :func:`qbank.selection._rank_and_pick` gives it with ``depth`` 1, from the few entries that can
    matter: those whose upper bound reaches the largest lower bound among the usable ones (which
    the pick's information is at least). Every other entry ranks strictly below the pick, so it
    can neither be picked, nor tie, nor be withdrawn for ranking above it.

    Returns the chosen column (n,) (-1 if none), its information (n,) (-inf if none) and the
    withdrawn entries as flat indices into the (n, width) block, in row-major order."""
    lower, upper = (bound.take(cells, axis=0) for bound in index.bounds)  # take: 2-4x a fancy index
    n, width = lower.shape
    usable = available if eligible is None else available & eligible
    # max(floor, 0) as the floor changes nothing: information is never negative and every upper
    # bound is >= 0 (padding exactly 0), so a row without usable entries still needs all its
    # available ones. The product is branch-free; np.where on a mask that is half True at random
    # costs 8x as much (mispredicted branches, measured on the issue-13 workload).
    floor = (lower * usable).max(axis=1)
    need = np.flatnonzero(available & (upper >= floor[:, None]))  # row-major
    row = need // width
    column_of = need - row * width
    at = cells.take(row) * width + column_of
    if index.codes is None:
        scaled_a, b, c, scale, one_minus_c = (np.ravel(p).take(at) for p in index.parameters)
        info = information_from_factors(expit(logit(theta_hat.take(row), scaled_a, b)), scale, one_minus_c, c)
    else:
        info = candidate_information(index, cells, theta_hat, need)
    is_usable = np.ravel(usable).take(need)
    value = np.where(is_usable, info, -np.inf)
    best = np.full(n, -np.inf)
    column = np.full(n, -1, dtype=np.intp)
    if need.size:
        starts = np.flatnonzero(np.concatenate([[True], row[1:] != row[:-1]]))
        best[row[starts]] = np.maximum.reduceat(value, starts)
        # the first entry of its row at the row's maximum (argmax's choice among ties)
        top = np.flatnonzero((value == best[row]) & is_usable)
        first = top[np.concatenate([[True], row[top[1:]] != row[top[:-1]]])] if top.size else top
        column[row[first]] = column_of[first]
    if eligible is None:
        return column, best, np.empty(0, np.intp)
    has_item = column >= 0
    chosen_pos = np.ravel(candidates).take(np.arange(n) * width + np.maximum(column, 0))
    rejected_pos = np.ravel(candidates).take(need)
    chosen_info = best[row]
    above = (info > chosen_info) | ((info == chosen_info) & (rejected_pos < chosen_pos[row]))
    return column, best, need[~is_usable & (above | ~has_item[row])]
