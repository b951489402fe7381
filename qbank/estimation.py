"""Ability estimation, batch-shaped: EAP, MAP and bounded MLE.

Every estimator takes the parameters of the items each examinee answered and the answers,
all shaped ``(n_examinees, n_answered)`` (NaN responses are padding for examinees who
answered fewer items), and returns ``theta`` and ``se`` of shape ``(n_examinees,)``.
The simulator calls them for thousands of examinees at once, the service for one.

References
----------
Bock, R. D. & Mislevy, R. J. (1982). Adaptive EAP estimation of ability in a
microcomputer environment. *Applied Psychological Measurement*, 6, 431-444 (EAP, posterior SD).
Lord, F. M. (1980). *Applications of IRT to practical testing problems*, ch. 4-5 (MLE, scoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit
from scipy.stats import norm

__all__ = ["EAP", "MAP", "MLE", "eap_from_posterior", "make_estimator"]


def _check_shapes(a, b, c, D, responses):
    responses = np.atleast_2d(np.asarray(responses, dtype=float))
    a, b, c, D = (np.broadcast_to(np.asarray(x, dtype=float), responses.shape) for x in (a, b, c, D))
    bad = ~np.isnan(responses) & (responses != 0.0) & (responses != 1.0)
    if bad.any():
        raise ValueError(f"responses must be 0, 1 or NaN; got {np.unique(responses[bad])[:5].tolist()}")
    return a, b, c, D, responses


def _response_probability(theta, a, b, c, D):
    """P for (n_e, n_q) grid points against (n_e, t) items -> (n_e, n_q, t)."""
    return c[:, None, :] + (1.0 - c[:, None, :]) * expit(
        D[:, None, :] * a[:, None, :] * (theta[..., None] - b[:, None, :])
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


@dataclass(frozen=True)
class EAP:
    """Expected a posteriori ability on a fixed quadrature grid (Bock & Mislevy 1982).

    Parameters
    ----------
    n_points : int
        Number of equally spaced quadrature points on ``[grid_min, grid_max]``.
    prior_mean, prior_sd : float
        Normal prior.
    """

    n_points: int = 61
    grid_min: float = -4.0
    grid_max: float = 4.0
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

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.grid_min, self.grid_max)

    def posterior(self, a, b, c, D, responses) -> np.ndarray:
        """Normalised posterior weights, shape (n_examinees, n_points)."""
        a, b, c, D, responses = _check_shapes(a, b, c, D, responses)
        grid = self.grid
        p = _response_probability(np.broadcast_to(grid, (responses.shape[0], grid.size)), a, b, c, D)
        answered = ~np.isnan(responses)[:, None, :]
        correct = (responses == 1.0)[:, None, :]
        loglik = np.where(answered, np.log(np.where(correct, p, 1.0 - p)), 0.0).sum(axis=2)
        log_post = loglik + self._log_prior
        post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
        return post / post.sum(axis=1, keepdims=True)

    def estimate(self, a, b, c, D, responses):
        """EAP ability and posterior SD for each examinee.

        Returns
        -------
        theta, se : ndarray of shape (n_examinees,)
        """
        return eap_from_posterior(self.posterior(a, b, c, D, responses), self.grid)


def _scoring(theta, a, b, c, D, responses, prior_mean, prior_precision, bounds, n_iter):
    """Fisher scoring for MLE (prior_precision = 0) or MAP, clipped to ``bounds``.

    Score of the 3PL log-likelihood: sum D a (u - P)(P - c) / (P (1 - c)) (Lord 1980, eq. 5-21).
    """
    answered = ~np.isnan(responses)
    u = np.where(answered, responses, 0.0)
    lo, hi = bounds
    for _ in range(n_iter):
        logistic = expit(D * a * (theta[:, None] - b))
        p = c + (1.0 - c) * logistic
        score = np.where(answered, D * a * (u - p) * (p - c) / (p * (1.0 - c)), 0.0).sum(axis=1)
        info = np.where(answered, (D * a) ** 2 * (1.0 - c) * logistic**2 * (1.0 - logistic) / p, 0.0).sum(
            axis=1
        )
        score = score - prior_precision * (theta - prior_mean)
        info = info + prior_precision
        step = np.where(info > 0, score / np.maximum(info, 1e-12), 0.0)
        theta = np.clip(theta + np.clip(step, -1.0, 1.0), lo, hi)
    logistic = expit(D * a * (theta[:, None] - b))
    p = c + (1.0 - c) * logistic
    info = np.where(answered, (D * a) ** 2 * (1.0 - c) * logistic**2 * (1.0 - logistic) / p, 0.0).sum(axis=1)
    with np.errstate(divide="ignore"):
        se = 1.0 / np.sqrt(info + prior_precision)
    return theta, se


@dataclass(frozen=True)
class MAP:
    """Maximum a posteriori ability with a normal prior (Fisher scoring from the EAP start).

    SE is ``1 / sqrt(I(theta) + 1 / prior_sd^2)``.
    """

    prior_mean: float = 0.0
    prior_sd: float = 1.0
    bounds: tuple[float, float] = (-4.0, 4.0)
    n_iter: int = 12

    name = "map"

    def estimate(self, a, b, c, D, responses):
        a, b, c, D, responses = _check_shapes(a, b, c, D, responses)
        start, _ = EAP(
            grid_min=self.bounds[0],
            grid_max=self.bounds[1],
            prior_mean=self.prior_mean,
            prior_sd=self.prior_sd,
        ).estimate(a, b, c, D, responses)
        return _scoring(
            start, a, b, c, D, responses, self.prior_mean, 1.0 / self.prior_sd**2, self.bounds, self.n_iter
        )


@dataclass(frozen=True)
class MLE:
    """Maximum likelihood ability, bounded to ``bounds`` (all-correct or all-wrong patterns
    and patterns with no answers end at a bound; their SE is that of the bound).

    The start is the log-likelihood maximum on a 161-point grid over ``bounds``, then
    Fisher scoring; SE is ``1 / sqrt(I(theta))``.
    """

    bounds: tuple[float, float] = (-4.0, 4.0)
    n_iter: int = 12

    name = "mle"

    def estimate(self, a, b, c, D, responses):
        a, b, c, D, responses = _check_shapes(a, b, c, D, responses)
        grid = np.linspace(self.bounds[0], self.bounds[1], 161)
        p = _response_probability(np.broadcast_to(grid, (responses.shape[0], grid.size)), a, b, c, D)
        answered = ~np.isnan(responses)[:, None, :]
        correct = (responses == 1.0)[:, None, :]
        loglik = np.where(answered, np.log(np.where(correct, p, 1.0 - p)), 0.0).sum(axis=2)
        start = grid[np.argmax(loglik, axis=1)]
        return _scoring(start, a, b, c, D, responses, 0.0, 0.0, self.bounds, self.n_iter)


def make_estimator(name: str, **kwargs):
    """Estimator by name: 'eap', 'map' or 'mle'."""
    estimators = {"eap": EAP, "map": MAP, "mle": MLE}
    try:
        return estimators[name.lower()](**kwargs)
    except KeyError:
        raise ValueError(f"estimator must be one of {sorted(estimators)}, got {name!r}") from None
