"""Item response functions and Fisher information for the 1PL, 2PL and 3PL models.

All functions are batch-shaped: ``theta`` of shape ``(n_examinees,)`` against item
parameters of shape ``(n_items,)`` gives ``(n_examinees, n_items)``. A 1PL item is a
3PL item with ``a = 1, c = 0``; a 2PL item has ``c = 0``. ``D`` is the scaling constant
stored with every parameter set (1.0 for the logistic metric, 1.702 for the normal
ogive metric); never mix the two.

References
----------
Birnbaum, A. (1968). Some latent trait models and their use in inferring an examinee's
ability. In Lord & Novick, *Statistical theories of mental test scores*, ch. 17-20.
Lord, F. M. (1980). *Applications of item response theory to practical testing problems*,
eq. 5-19 (3PL item information).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

__all__ = [
    "information",
    "information_elementwise",
    "information_factors",
    "information_from_factors",
    "information_from_logistic",
    "information_peak",
    "log_likelihood",
    "logit",
    "probability",
    "probability_elementwise",
    "probability_from_logistic",
    "test_information",
]


# The one 3PL kernel: every module (estimation, simulation, calibration, the service) computes
# P and I through these functions; tests/test_irt.py checks that no other module writes them out.
def logit(theta, a, b, D=1.0):
    """``D a (theta - b)``, all arguments broadcast elementwise (``a`` already scaled when ``D`` is
    the plain number 1, which skips a multiplication that would not change a bit)."""
    scaled_a = a if (type(D) in (int, float) and D == 1) else D * a
    return scaled_a * (theta - b)


def probability_from_logistic(logistic, c):
    """3PL probability ``c + (1 - c) L`` from the logistic ``L = 1 / (1 + exp(-D a (theta - b)))``."""
    return c + (1.0 - c) * logistic


def probability_elementwise(theta, a, b, c=0.0, D=1.0):
    """3PL probability with all arguments broadcast elementwise (shapes chosen by the caller:
    a grid against items, or each examinee against the item it was given)."""
    return probability_from_logistic(expit(logit(theta, a, b, D)), c)


def _logit(theta, a, b, D):
    return logit(np.asarray(theta, dtype=float)[..., None], a, b, D)


def probability(theta, a, b, c=0.0, D=1.0):
    """Probability of a correct response, ``c + (1 - c) / (1 + exp(-D a (theta - b)))``.

    Parameters
    ----------
    theta : array_like of shape (n_examinees,)
    a, b, c : array_like of shape (n_items,)
        Discrimination, difficulty and lower asymptote (``c = 0`` for 1PL/2PL).
    D : float or array_like of shape (n_items,)
        Scaling constant.

    Returns
    -------
    ndarray of shape (n_examinees, n_items)
    """
    return probability_from_logistic(expit(_logit(theta, a, b, D)), c)


def information_factors(a, c, D=1.0):
    """The per-item factors of :func:`information_from_logistic`: ``((D a)^2 (1 - c), 1 - c)``."""
    one_minus_c = 1.0 - c
    return (D * a) ** 2 * one_minus_c, one_minus_c


def information_from_factors(logistic, scale, one_minus_c, c):
    """3PL information from the logistic ``L`` and :func:`information_factors`, elementwise:
    ``scale L^2 (1 - L) / (c + (1 - c) L)``, in the order of :func:`information_from_logistic`
    (so the two agree bit for bit); a fresh array, its temporaries reused."""
    out = np.multiply(scale, np.square(logistic))
    out *= 1.0 - logistic
    denominator = np.multiply(one_minus_c, logistic)
    denominator += c
    out /= denominator
    return out


def information_from_logistic(logistic, a, c, D):
    """3PL information from the logistic ``L`` (see :func:`information`), elementwise."""
    scale, one_minus_c = information_factors(a, c, D)
    return information_from_factors(logistic, scale, one_minus_c, c)


def information_elementwise(theta, a, b, c=0.0, D=1.0):
    """Information with all arguments broadcast elementwise (no examinee x item outer product).

    Used where each examinee has its own short list of candidate items: ``theta`` of shape
    ``(n_examinees, 1)`` against parameters of shape ``(n_examinees, n_candidates)``.
    """
    return information_from_logistic(expit(logit(theta, a, b, D)), a, c, D)


def information(theta, a, b, c=0.0, D=1.0):
    """Fisher information ``(D a)^2 (Q/P) ((P - c)/(1 - c))^2`` (Lord 1980, eq. 5-19).

    Written through the logistic ``L`` so it needs one exponential per cell and stays
    finite in the tails: with ``P = c + (1-c) L`` and ``Q = (1-c)(1-L)`` it equals
    ``(D a)^2 (1 - c) L^2 (1 - L) / (c + (1 - c) L)``.

    Returns
    -------
    ndarray of shape (n_examinees, n_items)
    """
    return information_from_logistic(expit(_logit(theta, a, b, D)), a, c, D)


def test_information(theta, a, b, c=0.0, D=1.0):
    """Test information, the sum of item information over the items given.

    Returns
    -------
    ndarray of shape (n_examinees,)
    """
    return information(theta, a, b, c, D).sum(axis=-1)


def log_likelihood(theta, responses, a, b, c=0.0, D=1.0):
    """Log-likelihood of response patterns at ``theta``; NaN responses are not administered.

    Parameters
    ----------
    theta : array_like of shape (n_examinees,)
    responses : array_like of shape (n_examinees, n_items)
        1 correct, 0 incorrect, NaN not administered.

    Returns
    -------
    ndarray of shape (n_examinees,)
    """
    responses = np.asarray(responses, dtype=float)
    p = np.clip(probability(theta, a, b, c, D), 1e-300, 1.0 - 1e-16)
    terms = np.where(responses == 1.0, np.log(p), np.log1p(-p))
    return np.where(np.isnan(responses), 0.0, terms).sum(axis=-1)


def information_peak(a, b, c=0.0, D=1.0):
    """Ability at which a 3PL item's information peaks (Birnbaum 1968).

    ``theta_max = b + ln((1 + sqrt(1 + 8c)) / 2) / (D a)``; equals ``b`` when ``c = 0``.

    Returns
    -------
    ndarray of shape (n_items,)
    """
    c = np.asarray(c, dtype=float)
    return b + np.log((1.0 + np.sqrt(1.0 + 8.0 * c)) / 2.0) / (D * np.asarray(a, dtype=float))
