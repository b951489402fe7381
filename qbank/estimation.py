"""Ability estimation, batch-shaped: EAP, MAP and bounded MLE.

Every estimator takes the parameters of the items each examinee answered and the answers,
all shaped ``(n_examinees, n_answered)`` (NaN responses are padding for examinees who
answered fewer items), and returns ``theta`` and ``se`` of shape ``(n_examinees,)``.
The simulator calls them for thousands of examinees at once, the service for one.

Items of a mixed pool (:mod:`qbank.polytomous`) add the keywords ``model`` (model codes, shape
``(n_examinees, n_answered)``) and ``thresholds`` (``(n_examinees, n_answered, M - 1)``,
NaN-padded); responses are then category scores ``0 .. m-1``. Without them, or when every
answered item is dichotomous, the 3PL code runs as it always has.

References
----------
Bock, R. D. & Mislevy, R. J. (1982). Adaptive EAP estimation of ability in a
microcomputer environment. *Applied Psychological Measurement*, 6, 431-444 (EAP, posterior SD).
Lord, F. M. (1980). *Applications of IRT to practical testing problems*, ch. 4-5 (MLE, scoring).
Dodd, B. G. (1990). The effect of item selection procedure and stepsize on computerized adaptive
attitude measurement using the rating scale model. *Applied Psychological Measurement*, 14,
355-366 (step heuristic for constant patterns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit
from scipy.stats import norm

from qbank import irt
from qbank.polytomous import (
    DICHOTOMOUS,
    category_information,
    category_log_probabilities,
    log_probability_derivatives,
)

__all__ = ["EAP", "MAP", "MLE", "dodd_step", "eap_from_posterior", "make_estimator", "touches_edge"]


def _check_shapes(a, b, c, D, responses, model=None, thresholds=None):
    """Broadcast the gathered parameters against ``responses`` and check the responses.

    Returns ``a, b, c, D, responses, categories`` with ``categories = (model, thresholds)``
    when some answered item is polytomous, else None (the 3PL path)."""
    responses = np.atleast_2d(np.asarray(responses, dtype=float))
    a, b, c, D = (np.broadcast_to(np.asarray(x, dtype=float), responses.shape) for x in (a, b, c, D))
    if model is not None:
        model = np.broadcast_to(np.asarray(model, dtype=np.int8), responses.shape)
        if np.any(model != DICHOTOMOUS):
            if thresholds is None:
                raise ValueError("thresholds are required with model when some item is GRM or GPCM")
            thresholds = np.asarray(thresholds, dtype=float)
            thresholds = np.broadcast_to(thresholds, (*responses.shape, thresholds.shape[-1]))
            n_categories = np.where(model == DICHOTOMOUS, 2, np.sum(~np.isnan(thresholds), axis=-1) + 1)
            with np.errstate(invalid="ignore"):
                bad = ~np.isnan(responses) & (
                    (responses != np.floor(responses)) | (responses < 0) | (responses >= n_categories)
                )
            if bad.any():
                shown = [
                    f"row {e}, answer {j}: {responses[e, j]:g} (item with {n_categories[e, j]} categories)"
                    for e, j in zip(*np.nonzero(bad))
                ][:5]
                raise ValueError(
                    f"responses must be category scores 0 .. m-1 of their item, or NaN; got {shown}"
                )
            return a, b, c, D, responses, (model, thresholds)
    bad = ~np.isnan(responses) & (responses != 0.0) & (responses != 1.0)
    if bad.any():
        raise ValueError(f"responses must be 0, 1 or NaN; got {np.unique(responses[bad])[:5].tolist()}")
    return a, b, c, D, responses, None


def _rows_of(categories, rows):
    return None if categories is None else tuple(x[rows] for x in categories)


def _response_probability(theta, a, b, c, D):
    """P for (n_e, n_q) grid points against (n_e, t) items -> (n_e, n_q, t)."""
    return irt.probability_elementwise(
        theta[..., None], a[:, None, :], b[:, None, :], c[:, None, :], D[:, None, :]
    )


def eap_from_posterior(posterior, grid):
    """EAP and posterior SD from (unnormalised) posterior weights on a grid.

    Parameters
    ----------
    posterior : ndarray of shape (n_examinees, n_points)
    grid : ndarray of shape (n_points,)

    Returns
    -------
    theta, se : ndarray of shape (n_examinees,)
    """
    total = posterior.sum(axis=1)
    theta = (posterior @ grid) / total
    second = (posterior @ (grid * grid)) / total
    return theta, np.sqrt(np.maximum(second - theta * theta, 0.0))


# A grid end point carrying more than this share of the posterior weight means the grid may cut
# off tail mass that moves the EAP or the SD by 1e-5 or more (see EAP's Notes).
EDGE_SHARE = 1e-6
# Half-widths (in prior SDs around the prior mean) of the wider grids an edge-touching row moves to.
_WIDE_HALF_WIDTHS = (12.0, 40.0)


def _log_likelihood_on_grid(grid, a, b, c, D, responses, categories=None):
    """Log-likelihood of each examinee's answers at each grid point: (n_e, n_q)."""
    if categories is not None:
        return _category_log_likelihood_on_grid(grid, a, b, c, D, responses, *categories)
    p = _response_probability(np.broadcast_to(grid, (responses.shape[0], grid.size)), a, b, c, D)
    answered = ~np.isnan(responses)[:, None, :]
    correct = (responses == 1.0)[:, None, :]
    with np.errstate(divide="ignore"):  # p rounds to 0 or 1 far out on the wide grids: weight 0
        return np.where(answered, np.log(np.where(correct, p, 1.0 - p)), 0.0).sum(axis=2)


def _category_log_likelihood_on_grid(grid, a, b, c, D, responses, model, thresholds):
    """The same for a mixed pool, from :func:`~qbank.polytomous.category_log_probabilities` of
    each answered item (flattened over the answers, so padding costs nothing)."""
    rows, cols = np.nonzero(~np.isnan(responses))
    log_p = category_log_probabilities(
        grid[None, :],
        *(x[rows, cols][:, None] for x in (a, b, c, D, model)),
        thresholds[rows, cols][:, None, :],
    )  # (n_answers, n_points, M)
    chosen = responses[rows, cols].astype(np.intp)
    terms = np.zeros((*responses.shape, grid.size))
    terms[rows, cols] = np.take_along_axis(log_p, chosen[:, None, None], axis=2)[:, :, 0]
    return terms.sum(axis=1)


def _normalised(log_post):
    post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
    return post / post.sum(axis=1, keepdims=True)


def touches_edge(posterior) -> np.ndarray:
    """Rows whose posterior weight at either end point of the grid exceeds ``EDGE_SHARE`` of the
    row's total, i.e. where the grid cuts off tail mass that matters (n_examinees,) bool."""
    total = posterior.sum(axis=1)
    return np.maximum(posterior[:, 0], posterior[:, -1]) > EDGE_SHARE * total


@dataclass(frozen=True)
class EAP:
    """Expected a posteriori ability and posterior SD, integrated over the whole real line
    (Bock & Mislevy 1982).

    The posterior is summed on an equally spaced grid over ``[grid_min, grid_max]``; a row
    whose posterior still carries weight at an end of that grid (all-correct or all-wrong
    patterns on extreme items) is integrated again on a grid of the same spacing reaching
    ``prior_mean +- 12 prior_sd`` (``+- 40`` if that is still touched). The rule for the sum
    on an equally spaced grid is the trapezoid rule, whose error on a smooth, rapidly decaying
    integrand falls like ``exp(-2 pi^2 sigma^2 / h^2)`` for a posterior of SD ``sigma`` and
    spacing ``h`` (Trefethen & Weideman 2014, SIAM Review 56, 385-458), so what matters is
    only that no tail mass is cut off.

    Parameters
    ----------
    n_points : int
        Number of equally spaced quadrature points on ``[grid_min, grid_max]``.
    grid_min, grid_max : float
        The grid every examinee is summed on (the simulator's incremental posterior lives
        there); rows whose posterior touches its ends are widened as above.
    prior_mean, prior_sd : float
        Normal prior.

    Notes
    -----
    The default grid (81 points on [-6, 6], spacing 0.15) holds the N(0, 1) prior with an end
    point share of 1e-9, so only examinees whose answers push the posterior towards an edge
    pay for the wider grid (about 1 % of the simulees of a 30-item test, late in their test).
    With a normal tail cut where the end point holds a share ``s`` of the weights, the mass cut
    off is about ``s sigma / h`` and moves the mean and SD by less than ``s`` times a few
    ``sigma``: ``EDGE_SHARE = 1e-6`` keeps both errors under 1e-5. Against integration over the whole
    line (``scipy.integrate.quad``) every pattern of the demo pool's 30 hardest and 30 easiest
    items, constant ones included, agrees to 1e-5 in theta and SD (``tests/test_estimation.py``).
    """

    n_points: int = 81
    grid_min: float = -6.0
    grid_max: float = 6.0
    prior_mean: float = 0.0
    prior_sd: float = 1.0

    name = "eap"

    def __post_init__(self):
        if self.n_points < 3:
            raise ValueError(f"n_points must be >= 3, got {self.n_points}")
        if not self.grid_min < self.grid_max:
            raise ValueError("grid_min must be < grid_max")
        if self.prior_sd <= 0:
            raise ValueError(f"prior_sd must be > 0, got {self.prior_sd}")

    # Cached: the service estimates once per answer and should not rebuild them each time.
    @cached_property
    def grid(self) -> np.ndarray:
        grid = np.linspace(self.grid_min, self.grid_max, self.n_points)
        grid.setflags(write=False)
        return grid

    @cached_property
    def prior(self) -> np.ndarray:
        """Prior weights on the grid, normalised to sum 1."""
        weights = norm.pdf(self.grid, self.prior_mean, self.prior_sd)
        weights = weights / weights.sum()
        weights.setflags(write=False)
        return weights

    @cached_property
    def _log_prior(self) -> np.ndarray:
        return np.log(self.prior)

    @cached_property
    def _wide_grids(self) -> tuple:
        """Grids of the base spacing that contain the base grid and reach ``_WIDE_HALF_WIDTHS``."""
        h = (self.grid_max - self.grid_min) / (self.n_points - 1)
        grids = []
        for half_width in _WIDE_HALF_WIDTHS:
            low = min(self.grid_min, self.prior_mean - half_width * self.prior_sd)
            high = max(self.grid_max, self.prior_mean + half_width * self.prior_sd)
            n_below, n_above = math.ceil((self.grid_min - low) / h), math.ceil((high - self.grid_max) / h)
            grids.append(self.grid_min + h * np.arange(-n_below, self.n_points + n_above))
        return tuple(grids)

    @property
    def bounds(self) -> tuple[float, float]:
        """The base grid's range, where the selection index is built."""
        return (self.grid_min, self.grid_max)

    def posterior(self, a, b, c, D, responses, *, model=None, thresholds=None) -> np.ndarray:
        """Normalised posterior weights on :attr:`grid`, shape (n_examinees, n_points)."""
        a, b, c, D, responses, categories = _check_shapes(a, b, c, D, responses, model, thresholds)
        return _normalised(
            _log_likelihood_on_grid(self.grid, a, b, c, D, responses, categories) + self._log_prior
        )

    def estimate(self, a, b, c, D, responses, *, model=None, thresholds=None):
        """EAP ability and posterior SD for each examinee.

        Parameters
        ----------
        a, b, c, D, responses : array_like of shape (n_examinees, n_answered)
        model : array_like of shape (n_examinees, n_answered), optional
            Model codes of a mixed pool's items; responses are then category scores.
        thresholds : array_like of shape (n_examinees, n_answered, M - 1), optional

        Returns
        -------
        theta, se : ndarray of shape (n_examinees,)

        Raises
        ------
        ValueError
            A response that is not a category of its item (0/1 for a dichotomous one).
        """
        a, b, c, D, responses, categories = _check_shapes(a, b, c, D, responses, model, thresholds)
        posterior = _normalised(
            _log_likelihood_on_grid(self.grid, a, b, c, D, responses, categories) + self._log_prior
        )
        theta, se = eap_from_posterior(posterior, self.grid)
        rows = np.flatnonzero(touches_edge(posterior))
        for grid in self._wide_grids:
            if rows.size == 0:
                break
            log_prior = norm.logpdf(grid, self.prior_mean, self.prior_sd)
            sub = (x[rows] for x in (a, b, c, D, responses))
            wide = _normalised(_log_likelihood_on_grid(grid, *sub, _rows_of(categories, rows)) + log_prior)
            theta[rows], se[rows] = eap_from_posterior(wide, grid)
            rows = rows[touches_edge(wide)]
        return theta, se


def _expected_information(logistic, a, c, D, answered):
    return np.where(answered, irt.information_from_logistic(logistic, a, c, D), 0.0).sum(axis=1)


def _scoring(theta, a, b, c, D, responses, prior_mean, prior_precision, bounds, n_iter, categories=None):
    """Newton-Raphson for MLE (prior_precision = 0) or MAP, clipped to ``bounds``.

    Score of the 3PL log-likelihood: sum D a (u - P)(P - c) / (P (1 - c)) (Lord 1980, eq. 5-21);
    the step divides by the observed information ``-d2 log L / d theta2`` (with
    ``P' = D a (1 - c) L (1 - L)``, ``P'' = P' D a (1 - 2 L)``), or by the expected (Fisher)
    information where the observed is not positive. Fisher scoring alone overshoots on 3PL
    tails (the expected information is half the curvature there) and can cycle.
    SE is ``1 / sqrt(I(theta) + prior_precision)`` with the expected information. A mixed pool's
    answers (``categories``) take the same steps with :func:`_category_scoring`.
    """
    if categories is not None:
        return _category_scoring(
            theta, a, b, c, D, responses, *categories, prior_mean, prior_precision, bounds, n_iter
        )
    answered = ~np.isnan(responses)
    u = np.where(answered, responses, 0.0)
    lo, hi = bounds
    for _ in range(n_iter):
        logistic = expit(irt.logit(theta[:, None], a, b, D))
        p = irt.probability_from_logistic(logistic, c)
        q = 1.0 - p
        dp = D * a * (1.0 - c) * logistic * (1.0 - logistic)
        d2p = dp * D * a * (1.0 - 2.0 * logistic)
        score = np.where(answered, (u - p) * dp / (p * q), 0.0).sum(axis=1)
        curvature = np.where(
            answered, u * (d2p / p - (dp / p) ** 2) - (1.0 - u) * (d2p / q + (dp / q) ** 2), 0.0
        ).sum(axis=1)
        score = score - prior_precision * (theta - prior_mean)
        observed = prior_precision - curvature
        expected = _expected_information(logistic, a, c, D, answered) + prior_precision
        theta, settled = _newton_step(theta, score, observed, expected, lo, hi)
        if settled:
            break
    logistic = expit(irt.logit(theta[:, None], a, b, D))
    info = _expected_information(logistic, a, c, D, answered)
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(info + prior_precision)
    return theta, se


def _newton_step(theta, score, observed, expected, lo, hi):
    """One step of :func:`_scoring`: divide by the observed information where it is positive, else
    by the expected; at most one logit; inside ``[lo, hi]``. Also says whether every theta settled."""
    info = np.where(observed > 0, observed, expected)
    step = np.where(info > 0, score / np.maximum(info, 1e-12), 0.0)
    new_theta = np.clip(theta + np.clip(step, -1.0, 1.0), lo, hi)
    return new_theta, bool(np.all(np.abs(new_theta - theta) < 1e-10))


def _category_scoring(
    theta, a, b, c, D, responses, model, thresholds, prior_mean, prior_precision, bounds, n_iter
):
    """:func:`_scoring` for a mixed pool: the derivatives of each answer's log category probability
    (:func:`~qbank.polytomous.log_probability_derivatives`) summed per examinee, the same step,
    and the expected information of :func:`~qbank.polytomous.category_information`."""
    rows, cols = np.nonzero(~np.isnan(responses))
    n_examinees = responses.shape[0]
    entries = [x[rows, cols] for x in (a, b, c, D, model, thresholds)]
    chosen = responses[rows, cols].astype(np.intp)

    def summed(values):
        return np.bincount(rows, weights=values, minlength=n_examinees)

    lo, hi = bounds
    for _ in range(n_iter):
        first, second = log_probability_derivatives(theta[rows], *entries, chosen)
        score = summed(first) - prior_precision * (theta - prior_mean)
        observed = prior_precision - summed(second)
        expected = summed(category_information(theta[rows], *entries)) + prior_precision
        theta, settled = _newton_step(theta, score, observed, expected, lo, hi)
        if settled:
            break
    info = summed(category_information(theta[rows], *entries))
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(info + prior_precision)
    return theta, se


def _check_bounds(bounds):
    if len(bounds) != 2 or not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
    return (float(bounds[0]), float(bounds[1]))


@dataclass(frozen=True)
class MAP:
    """Maximum a posteriori ability with a normal prior (Newton-Raphson from the EAP start).

    SE is ``1 / sqrt(I(theta) + 1 / prior_sd^2)``. The prior keeps the mode finite for every
    pattern; ``bounds`` only guards the iteration and are wide enough for the N(0, 1) prior's
    most extreme modes (about +-3.6 on the demo pool).
    """

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    bounds: tuple[float, float] = (-6.0, 6.0)
    n_iter: int = 50

    name = "map"

    def __post_init__(self):
        object.__setattr__(self, "bounds", _check_bounds(self.bounds))

    def estimate(self, a, b, c, D, responses, *, model=None, thresholds=None):
        """MAP ability and SE per examinee (arguments as :meth:`EAP.estimate`)."""
        a, b, c, D, responses, categories = _check_shapes(a, b, c, D, responses, model, thresholds)
        extra = {} if categories is None else dict(zip(("model", "thresholds"), categories))
        start, _ = EAP(prior_mean=self.prior_mean, prior_sd=self.prior_sd).estimate(
            a, b, c, D, responses, **extra
        )
        start = np.clip(start, *self.bounds)
        return _scoring(
            start,
            a,
            b,
            c,
            D,
            responses,
            self.prior_mean,
            1.0 / self.prior_sd**2,
            self.bounds,
            self.n_iter,
            categories,
        )


def dodd_step(n_answered, all_correct, b_range, start=0.0) -> np.ndarray:
    """Dodd's (1990) step heuristic for a constant pattern, in closed form.

    After each answer of a constant pattern the estimate moves half-way to the hardest item's
    ``b`` (all correct) or the easiest item's ``b`` (all wrong) of the pool:
    ``theta_{t+1} = theta_t + (b_max - theta_t) / 2``, so after ``k`` answers from ``start``
    ``theta_k = b_max - (b_max - start) / 2^k`` (``b_min`` for all wrong). This is catsim's
    ``cat.dodd`` applied at every step from its initial estimate.

    Parameters
    ----------
    n_answered : ndarray of shape (n_examinees,)
    all_correct : ndarray of shape (n_examinees,), bool
    b_range : (float, float)
        ``(min b, max b)`` of the pool.
    start : float
        The estimate before the first answer.
    """
    target = np.where(all_correct, b_range[1], b_range[0])
    return target + (start - target) * np.exp2(-np.asarray(n_answered, dtype=float))


@dataclass(frozen=True)
class MLE:
    """Maximum likelihood ability, bounded to ``bounds``.

    All-correct or all-wrong patterns have no finite MLE: they end at a bound (SE that of the
    bound), or, with ``dodd=True``, take Dodd's (1990) step heuristic (:func:`dodd_step`, catsim's
    default) with the pool's difficulty range ``b_range`` and the start ``start``. Patterns with no
    answers give ``start``. Otherwise the start is the log-likelihood maximum on a 201-point
    grid over ``bounds``, then Newton-Raphson; SE is ``1 / sqrt(I(theta))``.

    Parameters
    ----------
    bounds : (float, float)
    n_iter : int
        Most Newton-Raphson iterations (it stops once every estimate moves less than 1e-10).
    dodd : bool
        Dodd's heuristic for constant patterns.
    b_range : (float, float), optional
        ``(min b, max b)`` of the pool, needed with ``dodd``; :func:`qbank.simulate` fills it in
        from its pool when it is not given.
    start : float
        Estimate before the first answer (the first item's theta).
    """

    bounds: tuple[float, float] = (-5.0, 5.0)
    n_iter: int = 50
    dodd: bool = False
    b_range: tuple[float, float] | None = None
    start: float = 0.0

    name = "mle"

    def __post_init__(self):
        object.__setattr__(self, "bounds", _check_bounds(self.bounds))
        if self.b_range is not None:
            low, high = (float(x) for x in self.b_range)
            if not low <= high:
                raise ValueError(f"b_range must be (min b, max b), got {self.b_range!r}")
            object.__setattr__(self, "b_range", (low, high))

    def estimate(self, a, b, c, D, responses, *, model=None, thresholds=None):
        """MLE ability and SE per examinee (arguments as :meth:`EAP.estimate`). In a mixed pool a
        constant pattern is one scored all in the lowest, or all in the highest, category."""
        a, b, c, D, responses, categories = _check_shapes(a, b, c, D, responses, model, thresholds)
        grid = np.linspace(self.bounds[0], self.bounds[1], 201)
        loglik = _log_likelihood_on_grid(grid, a, b, c, D, responses, categories)
        start = grid[np.argmax(loglik, axis=1)]
        theta, se = _scoring(start, a, b, c, D, responses, 0.0, 0.0, self.bounds, self.n_iter, categories)
        answered = ~np.isnan(responses)
        n_answered = answered.sum(axis=1)
        top = 1.0
        if categories is not None:
            model, steps = categories
            top = np.where(model == DICHOTOMOUS, 1, np.sum(~np.isnan(steps), axis=-1)).astype(float)
        n_correct = (responses == top).sum(axis=1)
        empty = n_answered == 0
        theta[empty] = self.start
        if self.dodd:
            if self.b_range is None:
                raise ValueError("MLE(dodd=True) needs b_range = (min b, max b) of the pool")
            constant = ~empty & (((responses == 0.0).sum(axis=1) == n_answered) | (n_correct == n_answered))
            rows = np.flatnonzero(constant)
            theta[rows] = dodd_step(n_answered[rows], n_correct[rows] > 0, self.b_range, self.start)
            se[rows] = _scoring(
                theta[rows],
                a[rows],
                b[rows],
                c[rows],
                D[rows],
                responses[rows],
                0.0,
                0.0,
                (-np.inf, np.inf),
                0,
                _rows_of(categories, rows),
            )[1]
        return theta, se


def make_estimator(name: str, **kwargs):
    """Estimator by name: 'eap', 'map' or 'mle'."""
    estimators = {"eap": EAP, "map": MAP, "mle": MLE}
    try:
        return estimators[name.lower()](**kwargs)
    except KeyError:
        raise ValueError(f"estimator must be one of {sorted(estimators)}, got {name!r}") from None
