"""Selection on mixed pools (:mod:`qbank.polytomous`): every item's information by its own model,
in the full evaluation and in :class:`qbank.selection.InformationIndex`, computed so that an item's
value does not depend on how it was batched (the index must give the full evaluation's result)."""

from __future__ import annotations

import functools

import numpy as np

from qbank.irt import information, information_elementwise
from qbank.polytomous import DICHOTOMOUS, GPCM, GRM, step_information, steps_first


@functools.lru_cache(maxsize=16)
def _step_table(pool) -> tuple:
    """``D a``, the thresholds step-first (:func:`~qbank.polytomous.steps_first`) and the GRM/GPCM
    codes present, of a mixed pool (immutable, so computed once)."""
    codes = tuple(code for code in (GRM, GPCM) if np.any(pool.item_model == code))
    return pool.D * pool.a, np.ascontiguousarray(steps_first(pool.thresholds)), codes


def polytomous_information(pool, theta, items):
    """Information of GRM/GPCM ``items`` at ``theta``, both of shape (n_entries,).

    The full evaluation computes it here in one flat batch, the index in blocks
    (:func:`block_information`); both call :func:`~qbank.polytomous.step_information`, whose
    value for an entry depends only on that entry's theta and item."""
    slope, steps, codes = _step_table(pool)
    if len(codes) == 1:
        return step_information(codes[0], theta, slope[items], steps[:, items])
    out = np.empty(theta.shape)
    model = pool.item_model[items]
    for code in codes:
        entries = np.flatnonzero(model == code)
        chosen = items[entries]
        out[entries] = step_information(code, theta[entries], slope[chosen], steps[:, chosen])
    return out


def pool_information(pool, theta_hat):
    """Information of every item at every estimate, (n, n_items), each item by its own model."""
    info = information(theta_hat, pool.a, pool.b, pool.c, pool.D)
    if pool.is_polytomous:
        poly = np.flatnonzero(pool.item_model != DICHOTOMOUS)
        rows = np.repeat(np.arange(theta_hat.size), poly.size)
        items = np.tile(poly, theta_hat.size)
        info[rows, items] = polytomous_information(pool, theta_hat[rows], items)
    return info


def model_blocks(pool, is_candidate):
    """Candidates of each cell grouped by model (GRM, GPCM, dichotomous), padded with an item of
    the same model, and where each candidate of the index's position-ordered list sits among
    them (its padding at a last column of zeros, the information the index gives padding)."""
    scaled_a, steps = pool.D * pool.a, steps_first(pool.thresholds)  # steps (M - 1, n_items)
    blocks, items, valids = [], [], []
    for code in (GRM, GPCM, DICHOTOMOUS):
        members = pool.item_model == code
        chosen = is_candidate & members
        width = int(chosen.sum(axis=1).max()) if members.any() else 0
        if width == 0:
            continue
        order = np.argsort(~chosen, axis=1, kind="stable")[:, :width]
        valid = np.take_along_axis(chosen, order, axis=1)
        order = np.where(valid, order, np.flatnonzero(members)[0]).astype(np.intp)
        blocks.append(
            (code, scaled_a[order], pool.b[order], pool.c[order], np.ascontiguousarray(steps[:, order]))
        )
        items.append(order)
        valids.append(valid)
    block_item = np.where(np.concatenate(valids, axis=1), np.concatenate(items, axis=1), pool.n_items)
    n_candidates = is_candidate.sum(axis=1)
    width = int(n_candidates.max())
    to_position = np.argsort(block_item, axis=1, kind="stable")[:, :width]
    padding = np.arange(width)[None, :] >= n_candidates[:, None]
    to_position = np.where(padding, block_item.shape[1], to_position).astype(np.intp)
    return tuple(blocks), to_position


def block_information(index, cells, theta):
    """Information of a mixed pool's candidates, (n, width), in the index's candidate order."""
    parts = []
    for code, scaled_a, b, c, steps in index.blocks:
        if code == DICHOTOMOUS:
            parts.append(information_elementwise(theta, scaled_a[cells], b[cells], c[cells], 1.0))
        else:
            parts.append(step_information(code, theta, scaled_a[cells], steps[:, cells]))
    parts.append(np.zeros((cells.size, 1)))
    return np.take_along_axis(np.concatenate(parts, axis=1), index.to_position[cells], axis=1)
