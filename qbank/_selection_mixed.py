"""Selection on mixed pools (:mod:`qbank.polytomous`): every item's information by its own model,
in the full evaluation and in :class:`qbank.selection.InformationIndex`, computed so that an item's
value does not depend on how it was batched (the index must give the full evaluation's result)."""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import expit

from qbank.irt import information, information_from_factors, logit
from qbank.polytomous import DICHOTOMOUS, GPCM, GRM, step_information, steps_first


@functools.lru_cache(maxsize=16)
def _step_table(pool) -> tuple:
    """``D a``, the thresholds step-first (:func:`~qbank.polytomous.steps_first`) and the GRM/GPCM
    codes present, of a mixed pool (immutable, so computed once)."""
    codes = tuple(code for code in (GRM, GPCM) if np.any(pool.item_model == code))
    return pool.D * pool.a, np.ascontiguousarray(steps_first(pool.thresholds)), codes


def polytomous_information(pool, theta, items):
    """Information of GRM/GPCM ``items`` at ``theta``, both of shape (n_entries,).

    The full evaluation computes it here in one flat batch, the index in another
    (:func:`candidate_information`); both call :func:`~qbank.polytomous.step_information`, whose
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


def candidate_models(pool, order, valid):
    """Model code and step-first thresholds of an index's candidates, (n_cells, width) and
    (M - 1, n_cells, width); padding is coded dichotomous, so its information is the index's 0."""
    codes = np.where(valid, pool.item_model[order], DICHOTOMOUS).astype(np.int8)
    return codes, np.ascontiguousarray(steps_first(pool.thresholds)[:, order])


def candidate_information(index, cells, theta_hat, entries):
    """Information of a mixed pool's candidate entries (flat indices into the (n, width) block of
    ``cells``), each by its own model: the 3PL as the dichotomous index step computes it, a
    GRM/GPCM item by :func:`~qbank.polytomous.step_information`, in flat batches as
    :func:`polytomous_information` does."""
    width = index.candidates.shape[1]
    row = entries // width
    at = cells.take(row) * width + (entries - row * width)
    codes = index.codes.ravel().take(at)
    out = np.empty(entries.size)
    for code in (DICHOTOMOUS, GRM, GPCM):
        chosen = np.flatnonzero(codes == code)
        if chosen.size == 0:
            continue
        where, theta = at.take(chosen), theta_hat.take(row.take(chosen))
        if code == DICHOTOMOUS:
            scaled_a, b, c, scale, one_minus_c = (np.ravel(p).take(where) for p in index.parameters)
            out[chosen] = information_from_factors(expit(logit(theta, scaled_a, b)), scale, one_minus_c, c)
        else:
            slope = np.ravel(index.parameters[0]).take(where)
            steps = index.steps.reshape(index.steps.shape[0], -1)[:, where]
            out[chosen] = step_information(code, theta, slope, steps)
    return out
