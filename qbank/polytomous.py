"""Category probabilities and information for items scored in ordered categories, and for mixed pools.

An item with ``m`` categories is scored ``0 .. m-1``. Two polytomous models:

- graded response model, GRM (Samejima 1969): ``P*_k = logistic(D a (theta - b_k))`` is the
  probability of scoring ``k`` or more (``k = 1 .. m-1``, ``b_1 < b_2 < ...``), and
  ``P_k = P*_k - P*_{k+1}`` with ``P*_0 = 1``, ``P*_m = 0``;
- generalized partial credit model, GPCM (Muraki 1992): ``P_k`` is proportional to
  ``exp(sum_{v <= k} D a (theta - b_v))`` (the empty sum for ``k = 0``); the step difficulties
  ``b_v`` may be in any order.

Both reduce to the 2PL with ``m = 2``. A dichotomous item is the 3PL of :mod:`qbank.irt` with
categories ``(1 - P, P)``. Parameters of a mixed pool live in padded arrays: ``thresholds`` of shape
``(n_items, M - 1)`` with NaN past an item's last category (``M`` the most categories of any item),
and ``model`` codes (:data:`DICHOTOMOUS`, :data:`GRM`, :data:`GPCM`). Categories past an item's last
have probability 0.

Information is ``sum_k P_k'^2 / P_k`` (Samejima 1969, eq. for the GRM; equal to
``(D a)^2 Var(X | theta)`` for the GPCM, Muraki 1993).

References
----------
Samejima, F. (1969). Estimation of latent ability using a response pattern of graded scores.
*Psychometrika Monograph Supplement*, 17.
Muraki, E. (1992). A generalized partial credit model: application of an EM algorithm.
*Applied Psychological Measurement*, 16, 159-176.
Baker, F. B. & Kim, S.-H. (2004). *Item response theory: parameter estimation techniques*
(2nd ed.), ch. 8-9 (derivatives of the GRM and GPCM log-likelihoods in theta).
Muraki, E. (1993). Information functions of the generalized partial credit model.
*Applied Psychological Measurement*, 17, 351-363.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from qbank import irt

__all__ = [
    "DICHOTOMOUS",
    "GPCM",
    "GRM",
    "MODEL_CODES",
    "MODEL_NAMES",
    "category_information",
    "category_log_probabilities",
    "category_probabilities",
    "expected_score",
    "gpcm_information",
    "gpcm_probabilities",
    "grm_information",
    "grm_probabilities",
    "information_bounds",
    "log_probability_derivatives",
    "step_information",
    "steps_first",
]

DICHOTOMOUS, GRM, GPCM = 0, 1, 2
MODEL_NAMES = ("dichotomous", "GRM", "GPCM")
# Names a pool file may give in its ``model`` column; 1PL/2PL/3PL and blank are dichotomous.
MODEL_CODES = {
    "": DICHOTOMOUS,
    "1PL": DICHOTOMOUS,
    "2PL": DICHOTOMOUS,
    "3PL": DICHOTOMOUS,
    "GRM": GRM,
    "GPCM": GPCM,
}


def _padded(thresholds):
    """Thresholds with NaN (no such category) as +inf: then ``P*_k = 0`` (GRM) and the GPCM's
    cumulative logit is ``-inf``, so the missing categories get probability exactly 0."""
    thresholds = np.asarray(thresholds, dtype=float)
    return np.where(np.isnan(thresholds), np.inf, thresholds)


def _cumulative(theta, a, thresholds, D):
    """GRM ``P*_k`` for ``k = 0 .. M``, shape ``(..., M + 1)`` (first column 1, last 0)."""
    theta, a, D = (np.asarray(x, dtype=float)[..., None] for x in (theta, a, D))
    inner = expit(irt.logit(theta, a, _padded(thresholds), D))
    star = np.empty((*inner.shape[:-1], inner.shape[-1] + 2))
    star[..., 0], star[..., -1] = 1.0, 0.0
    star[..., 1:-1] = inner
    return star


def grm_probabilities(theta, a, thresholds, D=1.0):
    """Graded response model category probabilities (Samejima 1969).

    Parameters
    ----------
    theta, a, D : array_like, broadcast against each other and ``thresholds[..., 0]``
    thresholds : array_like of shape (..., M - 1)
        Increasing boundaries ``b_1 < ... < b_{m-1}``, NaN past an item's last category.

    Returns
    -------
    ndarray of shape (..., M): ``P(X = k | theta)``.
    """
    star = _cumulative(theta, a, thresholds, D)
    return star[..., :-1] - star[..., 1:]


def grm_information(theta, a, thresholds, D=1.0):
    """GRM item information ``sum_k (P*_k' - P*_{k+1}')^2 / P_k`` with ``P*' = D a P* (1 - P*)``
    (Samejima 1969), computed as ``(D a)^2 sum_k P_k (1 - P*_k - P*_{k+1})^2``: the same sum, since
    ``P*_k' - P*_{k+1}' = D a P_k (1 - P*_k - P*_{k+1})``, without a division by a small ``P_k``."""
    theta, slope = _slope(theta, a, D)
    return step_information(GRM, theta, slope, steps_first(thresholds, theta.ndim, slope.ndim))


def _slope(theta, a, D):
    theta = np.asarray(theta, dtype=float)
    return theta, np.asarray(D, dtype=float) * np.asarray(a, dtype=float)


def steps_first(thresholds, *ndims):
    """Thresholds with the step axis first and NaN (no such category) as +inf, shaped to
    broadcast against arrays of ``ndims`` dimensions: (M - 1, 1, ..., *thresholds.shape[:-1])."""
    steps = np.moveaxis(_padded(thresholds), -1, 0)
    ndim = max((*ndims, steps.ndim - 1))
    return steps.reshape((steps.shape[0],) + (1,) * (ndim + 1 - steps.ndim) + steps.shape[1:])


def _logistic(x):
    """The logistic function (``scipy.special.expit``) of ``x``, a temporary, computed in place of
    it from numpy's vectorised ``exp``: several times faster than ``expit``, which matters in
    selection's inner loop (values agree to a few units in the last place)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(over="ignore"):  # exp(-x) = inf far below a threshold: the logistic is 0
        np.negative(x, out=x)
        np.exp(x, out=x)
    x += 1.0
    return np.reciprocal(x, out=x)


def step_information(code, theta, slope, steps):
    """Information of GRM or GPCM items (``code``) from ``slope = D a`` and :func:`steps_first`.

    The kernel of :func:`grm_information` and :func:`gpcm_information`: one pass per category over
    contiguous arrays (faster than a reduction over a short last axis, and no BLAS product), so
    each value depends only on its own theta and item, however the items are batched; selection
    relies on that to rank items identically with and without its index.
    """
    if code == GRM:
        total, upper = 0.0, 1.0
        for k in range(steps.shape[0] + 1):
            lower = _logistic(irt.logit(theta, slope, steps[k], 1.0)) if k < steps.shape[0] else 0.0
            g = 1.0 - upper - lower
            g *= g
            g *= upper - lower
            total = total + g
            upper = lower
        return slope * slope * total
    # GPCM: cumulative logits z_k, then (D a)^2 Var(X) from the normalised weights exp(z_k - max z).
    logits = [np.zeros(np.broadcast_shapes(np.shape(theta), np.shape(slope), steps.shape[1:]))]
    for step in steps:
        logits.append(logits[-1] + irt.logit(theta, slope, step, 1.0))
    top = logits[0]
    for z in logits[1:]:
        top = np.maximum(top, z)
    weights = [np.subtract(z, top) for z in logits]
    for w in weights:  # in place, as in _logistic: one code path for exp whatever the batch size
        np.exp(w, out=w)
    total, mean = weights[0], 0.0
    for k, w in enumerate(weights[1:], start=1):
        total = total + w
        mean = mean + k * w
    mean = mean / total
    spread = 0.0
    for k, w in enumerate(weights):
        spread = spread + w * (k - mean) ** 2
    return slope * slope * (spread / total)


def _gpcm_logits(theta, a, thresholds, D):
    theta, a, D = (np.asarray(x, dtype=float)[..., None] for x in (theta, a, D))
    steps = irt.logit(theta, a, _padded(thresholds), D)  # (..., M - 1), -inf past the last category
    zero = np.zeros((*steps.shape[:-1], 1))
    return np.concatenate([zero, np.cumsum(steps, axis=-1)], axis=-1)


def gpcm_probabilities(theta, a, thresholds, D=1.0):
    """Generalized partial credit model category probabilities (Muraki 1992), shape (..., M)."""
    z = _gpcm_logits(theta, a, thresholds, D)
    z -= z.max(axis=-1, keepdims=True)  # the largest term is exp(0): no overflow
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def gpcm_information(theta, a, thresholds, D=1.0):
    """GPCM item information ``(D a)^2 Var(X | theta)`` (Muraki 1993)."""
    theta, slope = _slope(theta, a, D)
    return step_information(GPCM, theta, slope, steps_first(thresholds, theta.ndim, slope.ndim))


def _mixed(theta, a, b, c, D, model, thresholds, kernels, per_category):
    """Evaluate each item with its own model; all per-item arrays broadcast against ``theta``.
    ``per_category``: the kernels return a trailing category axis the model mask must skip."""
    dichotomous, grm, gpcm = kernels
    model = np.asarray(model)
    out = dichotomous(theta, a, b, c, D)
    for code, kernel in ((GRM, grm), (GPCM, gpcm)):
        if np.any(model == code):
            mask = (model == code)[..., None] if per_category else model == code
            out = np.where(mask, kernel(theta, a, thresholds, D), out)
    return out


def _dichotomous_categories(n_categories):
    def categories(theta, a, b, c, D):
        p = irt.probability_elementwise(theta, a, b, c, D)
        table = np.zeros((*p.shape, n_categories))
        table[..., 0] = 1.0 - p
        table[..., 1] = p
        return table

    return categories


def category_probabilities(theta, a, b, c, D, model, thresholds):
    """``P(X = k | theta)`` for every item of a mixed pool, all arrays broadcast elementwise.

    Parameters
    ----------
    theta, a, b, c, D, model : array_like, broadcast against each other (for an examinee-by-item
        table pass ``theta[:, None]`` against per-item arrays of shape ``(n_items,)``)
    thresholds : array_like of shape (..., M - 1)
        Per-item thresholds (NaN-padded; ignored for dichotomous items, may be all NaN).

    Returns
    -------
    ndarray of shape (..., M) with ``M >= 2``; rows sum to 1.
    """
    thresholds = np.asarray(thresholds, dtype=float)
    n_categories = max(thresholds.shape[-1] + 1, 2)
    if thresholds.shape[-1] == 0:
        thresholds = np.full((*thresholds.shape[:-1], 1), np.nan)
    return _mixed(
        theta,
        a,
        b,
        c,
        D,
        model,
        thresholds,
        (_dichotomous_categories(n_categories), grm_probabilities, gpcm_probabilities),
        per_category=True,
    )


def category_log_probabilities(theta, a, b, c, D, model, thresholds):
    """Natural log of :func:`category_probabilities` (``-inf`` for categories an item lacks)."""
    with np.errstate(divide="ignore"):
        return np.log(category_probabilities(theta, a, b, c, D, model, thresholds))


def category_information(theta, a, b, c, D, model, thresholds):
    """Fisher information of every item of a mixed pool (3PL, GRM or GPCM), broadcast elementwise.

    Returns
    -------
    ndarray of the broadcast shape of ``theta`` and the per-item arrays.
    """
    thresholds = np.asarray(thresholds, dtype=float)
    if thresholds.shape[-1] == 0:
        thresholds = np.full((*thresholds.shape[:-1], 1), np.nan)
    return _mixed(
        theta,
        a,
        b,
        c,
        D,
        model,
        thresholds,
        (irt.information_elementwise, grm_information, gpcm_information),
        per_category=False,
    )


def expected_score(theta, a, b, c, D, model, thresholds):
    """Expected item score ``sum_k k P_k`` (the probability of a correct answer for a dichotomous item)."""
    p = category_probabilities(theta, a, b, c, D, model, thresholds)
    return p @ np.arange(p.shape[-1], dtype=float)


def log_probability_derivatives(theta, a, b, c, D, model, thresholds, response):
    """First and second derivatives in theta of ``log P(X = response | theta)``, per answer.

    Parameters
    ----------
    theta, a, b, c, D, model, response : ndarray of shape (n_answers,)
        One entry per answer: the examinee's theta, the item's parameters and model code, the
        category scored (an integer ``0 .. m-1``, validation assumed).
    thresholds : ndarray of shape (n_answers, M - 1)

    Returns
    -------
    first, second : ndarray of shape (n_answers,)

    Notes
    -----
    With ``s_k = logistic(D a (theta - b_k))`` (``s_0 = 1``, ``s_m = 0``) the GRM category
    ``k`` has ``P_k = s_k - s_{k+1}`` and, since ``s' = D a s (1 - s)``,
    ``d log P_k = D a (1 - s_k - s_{k+1})`` and ``d2 log P_k = -(D a)^2 (s_k (1 - s_k) +
    s_{k+1} (1 - s_{k+1}))``. The GPCM is an exponential family in theta with statistic ``D a X``:
    ``d log P_k = D a (k - E[X])``, ``d2 log P_k = -(D a)^2 Var(X)`` (Baker & Kim 2004, ch. 8-9).
    A dichotomous item uses the 3PL's ``P' = D a (1 - c) L (1 - L)``, ``P'' = P' D a (1 - 2 L)``:
    ``d log P = P' / P`` (correct) or ``-P' / (1 - P)`` and ``d2 log P = P'' / P - (P' / P)^2`` or
    ``-P'' / (1 - P) - (P' / (1 - P))^2`` (Lord 1980, eq. 5-21).
    """
    first = np.empty(np.shape(theta))
    second = np.empty(np.shape(theta))
    for code in (DICHOTOMOUS, GRM, GPCM):
        rows = np.flatnonzero(model == code)
        if rows.size == 0:
            continue
        t, ai, bi, ci, di, k = (x[rows] for x in (theta, a, b, c, D, response))
        slope = di * ai
        if code == DICHOTOMOUS:
            logistic = expit(irt.logit(t, ai, bi, di))
            p = irt.probability_from_logistic(logistic, ci)
            q = 1.0 - p
            dp = slope * (1.0 - ci) * logistic * (1.0 - logistic)
            d2p = dp * slope * (1.0 - 2.0 * logistic)
            correct = k == 1
            first[rows] = np.where(correct, dp / p, -dp / q)
            second[rows] = np.where(correct, d2p / p - (dp / p) ** 2, -d2p / q - (dp / q) ** 2)
        elif code == GRM:
            steps = _padded(thresholds[rows])
            n = rows.size
            bounds = np.concatenate([np.full((n, 1), -np.inf), steps, np.full((n, 1), np.inf)], axis=1)
            k = k.astype(np.intp)
            lower = np.take_along_axis(bounds, k[:, None], axis=1)[:, 0]
            upper = np.take_along_axis(bounds, k[:, None] + 1, axis=1)[:, 0]
            s_lo, s_hi = expit(irt.logit(t, ai, lower, di)), expit(irt.logit(t, ai, upper, di))
            first[rows] = slope * (1.0 - s_lo - s_hi)
            second[rows] = -slope * slope * (s_lo * (1.0 - s_lo) + s_hi * (1.0 - s_hi))
        else:
            p = gpcm_probabilities(t, ai, thresholds[rows], di)
            scores = np.arange(p.shape[-1], dtype=float)
            mean = p @ scores
            variance = np.maximum(p @ (scores * scores) - mean * mean, 0.0)
            first[rows] = slope * (k - mean)
            second[rows] = -slope * slope * variance
    return first, second


def information_bounds(edges, a, D, model, thresholds):
    """Lower and upper bounds of GRM/GPCM item information on each cell ``[edges[j], edges[j+1]]``.

    Polytomous information may have several modes, so its extremes on a cell are not at the
    ends or at a known peak as for the 3PL; these bounds hold for every theta in the cell.

    Parameters
    ----------
    edges : ndarray of shape (n_cells + 1,), increasing
    a, D, model : ndarray of shape (n_items,)
        Model codes ``GRM`` or ``GPCM`` only.
    thresholds : ndarray of shape (n_items, M - 1)

    Returns
    -------
    lower, upper : ndarray of shape (n_cells, n_items)

    Notes
    -----
    GRM: with ``s_k = logistic(D a (theta - b_k))`` and ``P_k = s_k - s_{k+1}``, the derivative
    ``P_k' = D a P_k (1 - s_k - s_{k+1})`` turns Samejima's ``sum P_k'^2 / P_k`` into
    ``I = (D a)^2 sum_k P_k g_k^2`` with ``g_k = 1 - s_k - s_{k+1}``. Every ``s_k`` increases in
    theta, so on a cell ``P_k`` lies in ``[s_k(t0) - s_{k+1}(t1), s_k(t1) - s_{k+1}(t0)]`` and
    ``g_k`` in ``[g_k(t1), g_k(t0)]``; the products of the interval ends bound each term.
    GPCM: ``I = (D a)^2 Var(X)`` and ``dVar/dtheta = D a E[(X - mu)^3]`` (an exponential family in
    theta), whose size is at most ``D a (m - 1) Var`` because ``|X - mu| <= m - 1``; so
    ``I(theta) / I(center)`` lies within ``exp(+-D a (m - 1) h)`` for a cell of half-width ``h``
    (Gronwall's inequality).
    """
    edges = np.asarray(edges, dtype=float)
    n_cells, n_items = edges.size - 1, np.shape(a)[0]
    lower, upper = np.zeros((n_cells, n_items)), np.zeros((n_cells, n_items))
    slope = np.asarray(D, dtype=float) * np.asarray(a, dtype=float)
    grm = np.flatnonzero(model == GRM)
    if grm.size:
        star = _cumulative(edges[:, None], a[grm], thresholds[grm], D[grm])  # (n_edges, n_grm, M + 1)
        start, end = star[:-1], star[1:]
        p_low = np.maximum(start[..., :-1] - end[..., 1:], 0.0)
        p_high = end[..., :-1] - start[..., 1:]
        g_high = 1.0 - start[..., :-1] - start[..., 1:]
        g_low = 1.0 - end[..., :-1] - end[..., 1:]
        g2_max = np.maximum(g_high * g_high, g_low * g_low)
        g2_min = np.where(g_low > 0, g_low * g_low, np.where(g_high < 0, g_high * g_high, 0.0))
        scale = slope[grm] ** 2
        lower[:, grm] = scale * (p_low * g2_min).sum(axis=-1)
        upper[:, grm] = scale * (p_high * g2_max).sum(axis=-1)
    gpcm = np.flatnonzero(model == GPCM)
    if gpcm.size:
        center, half = (edges[:-1] + edges[1:]) / 2.0, (edges[1:] - edges[:-1]) / 2.0
        middle = gpcm_information(center[:, None], a[gpcm], thresholds[gpcm], D[gpcm])
        n_steps = np.sum(~np.isnan(thresholds[gpcm]), axis=1)
        factor = np.exp(slope[gpcm] * n_steps * half[:, None])
        lower[:, gpcm] = middle / factor
        upper[:, gpcm] = middle * factor
    return lower, upper
