"""Kernels of exposure calibration: tallies, the parameter updates, Monte-Carlo noise, the
target margin and the validation limit (see :mod:`qbank.exposure._calibrate` for the procedure).

References
----------
Sympson, J. B. & Hetter, R. D. (1985). Controlling item-exposure rates in computerized adaptive
testing. *Proc. 27th Annual Meeting of the Military Testing Association*, 973-977.
van der Linden, W. J. & Veldkamp, B. P. (2004). Constraining item exposure in computerized
adaptive testing with shadow tests. *Journal of Educational and Behavioral Statistics*, 29,
273-291 (eligibility update, eq. 13).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from qbank.pool import ItemPool
from qbank.simulation import SimulationResult

METHODS = ("sympson_hetter", "item_eligibility")
# Strata by which an unconditional run is also reported (P(A_i | theta_j) shows what
# unconditional control leaves uncontrolled).
REPORT_STRATA = (-1.0, 0.0, 1.0)


class ExposureTargetError(ValueError):
    """The exposure target cannot be met by this pool and test (refused before simulating)."""


# ---------------------------------------------------------------------------- kernels
@dataclass(frozen=True)
class _Tallies:
    """Counts of one simulation, always by (item, true stratum, estimate stratum)."""

    selections: np.ndarray  # (n_items, n_true, n_est)
    administrations: np.ndarray  # (n_items, n_true, n_est)
    examinees: np.ndarray  # (n_true,)

    @classmethod
    def of(cls, result: SimulationResult, conditional: bool) -> _Tallies:
        if conditional:
            return cls(
                result.cross_selection_count, result.cross_administration_count, result.stratum_examinee_count
            )
        return cls(
            result.selection_count[:, None, None],
            result.administration_count[:, None, None],
            np.array([result.n_examinees]),
        )

    @property
    def per_examinee(self) -> np.ndarray:
        return np.maximum(self.examinees, 1)[None, :]

    @property
    def selection_rate(self) -> np.ndarray:
        """P(S_i | j), (n_items, n_true)."""
        return self.selections.sum(axis=2) / self.per_examinee

    @property
    def exposure_rate(self) -> np.ndarray:
        """P(A_i | j), (n_items, n_true)."""
        return self.administrations.sum(axis=2) / self.per_examinee


def _as_2d(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[:, None] if values.ndim == 1 else values


def _min_over_used(bound, used, none=1.0) -> np.ndarray:
    """min over true strata j with used[i, j, k] of bound[i, j]; ``none`` where no j (n_items, n_est)."""
    return np.where(used, bound[:, :, None], none).min(axis=1)


def _k_shift(sh_p, new_sh_p, rate_at_lever) -> np.ndarray:
    """Largest change of P(A_i | j) the update implies, per true stratum (n_true,):
    ``max_i sum_k |dK_ik| s_ijk`` with ``s_ijk`` the rate at which parameter (i, k) is applied."""
    change = np.abs(new_sh_p - sh_p)[:, None, :] * rate_at_lever
    return change.sum(axis=2).max(axis=0)


# ---------------------------------------------------------------------------- public functions
def monte_carlo_se(r_max, n_examinees):
    """Standard error ``sqrt(r (1 - r) / N)`` of an exposure rate near ``r`` from ``N`` simulees."""
    n = np.asarray(n_examinees, dtype=float)
    with np.errstate(divide="ignore"):
        return np.sqrt(r_max * (1.0 - r_max) / n)


def noise_tolerance(r_max, n_examinees, n_capped=1, *, k_examinees=None, confidence=0.95):
    """How far above ``r`` the largest observed exposure rate may sit by Monte-Carlo noise alone.

    ``z_n * sqrt(r (1 - r)) * sqrt(1 / N + 1 / N_K)``, where ``z_n = Phi^-1(confidence ** (1 / n))``
    is the ``confidence`` quantile of the maximum of ``n`` independent standard normal deviates
    (``n`` = items at the cap), ``N`` the simulees behind the rates and ``N_K`` those behind the
    exposure parameters the rates were produced with (``K_i = r / P(S_i)`` from an independent
    sample of ``N_K``; omitted = parameters known exactly).

    Parameters
    ----------
    r_max : float
    n_examinees : int or ndarray of shape (n_strata,)
    n_capped : int or ndarray of shape (n_strata,)
    k_examinees : int or ndarray of shape (n_strata,), optional
    confidence : float in (0, 1)

    Returns
    -------
    float or ndarray of shape (n_strata,)
        ``inf`` where ``N`` is 0.
    """
    n_capped = np.maximum(np.asarray(n_capped, dtype=float), 1.0)
    z = norm.ppf(confidence ** (1.0 / n_capped))
    n = np.asarray(n_examinees, dtype=float)
    with np.errstate(divide="ignore"):
        variance = 1.0 / n
        if k_examinees is not None:
            variance = variance + 1.0 / np.asarray(k_examinees, dtype=float)
    tol = z * math.sqrt(r_max * (1.0 - r_max)) * np.sqrt(variance)
    return float(tol) if np.ndim(tol) == 0 else tol


def sympson_hetter_update(selection_rate, r_max, used=None) -> np.ndarray:
    """Sympson-Hetter update of the exposure-control parameters.

    Classic rule (Sympson & Hetter 1985): ``K_i = r / P(S_i)`` if ``P(S_i) > r``, else 1.

    Parameters
    ----------
    selection_rate : ndarray of shape (n_items,) or (n_items, n_strata)
        ``P(S_i)``, or ``P(S_i | theta_j)`` by true stratum for conditional control.
    r_max : float or ndarray of shape (n_strata,)
        Target rate (per true stratum).
    used : ndarray of shape (n_items, n_strata, n_strata), bool, optional
        Conditional control: ``used[i, j, k]`` when item ``i`` was selected for examinees of
        true stratum ``j`` while their estimate was in stratum ``k``. Then
        ``K_ik = min over j with used[i, j, k] of the classic bound of (i, j)`` (1 where none;
        see the module docstring). Default: each stratum's parameter serves only its own
        examinees (``K_ij`` = classic bound of ``(i, j)``).

    Returns
    -------
    ndarray of the shape of ``selection_rate``
    """
    rate = np.asarray(selection_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(rate > r_max, r_max / rate, 1.0)
    if used is None:
        return bound
    return _min_over_used(_as_2d(bound), np.asarray(used, dtype=bool))


def eligibility_update(eligibility, exposure_rate, r_max, used=None) -> np.ndarray:
    """Item-eligibility update (van der Linden & Veldkamp 2004, eq. 13).

    ``p_i <- min(1, p_i r / P(A_i))``; an item never administered becomes fully eligible (the
    ratio is undefined; their safeguard).

    Parameters
    ----------
    eligibility : ndarray of shape (n_items,) or (n_items, n_strata)
        Current ``p`` (per estimate stratum for conditional control).
    exposure_rate : ndarray of shape (n_items,) or (n_items, n_strata)
        ``P(A_i)``, or ``P(A_i | theta_j)`` by true stratum.
    r_max : float or ndarray of shape (n_strata,)
        Target rate (per true stratum).
    used : ndarray of shape (n_items, n_strata, n_strata), bool, optional
        Conditional control: ``used[i, j, k]`` when item ``i`` was administered to examinees of
        true stratum ``j`` while their estimate was in stratum ``k``; ``p_ik`` then takes the
        smallest factor ``r / P(A_i | j)`` over those ``j`` (1 where none). Default: diagonal.

    Returns
    -------
    ndarray of the shape of ``eligibility``
    """
    p = np.asarray(eligibility, dtype=float)
    rate = np.asarray(exposure_rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(rate > 0, r_max / rate, np.inf)
    if used is None:
        return np.where(rate > 0, np.minimum(1.0, p * factor), 1.0)
    factor = _min_over_used(_as_2d(factor), np.asarray(used, dtype=bool), none=np.inf)
    with np.errstate(invalid="ignore"):
        return np.where(np.isinf(factor), 1.0, np.minimum(1.0, _as_2d(p) * factor))


def check_exposure_target(pool: ItemPool, r_max: float, stopping) -> None:
    """Refuse targets that no exposure control can meet, before any simulation.

    Every examinee takes at least ``min_length`` items, so ``sum_i P(A_i) >= min_length`` and
    ``max_i P(A_i) <= r`` needs ``n_items * r >= min_length``: at least ``L / r`` usable items
    (every pool item is usable: the selector may give any of them).

    Raises
    ------
    ExposureTargetError
    """
    if not (isinstance(r_max, (int, float, np.floating)) and math.isfinite(r_max) and 0.0 < r_max <= 1.0):
        raise ExposureTargetError(f"r_max must be in (0, 1], got {r_max!r}")
    if stopping.max_length > pool.n_items:
        raise ExposureTargetError(
            f"test length {stopping.max_length} exceeds the pool's {pool.n_items} items"
        )
    needed = stopping.min_length / r_max
    if pool.n_items < needed - 1e-9:
        raise ExposureTargetError(
            f"r_max = {r_max:g} with tests of at least {stopping.min_length} items needs at least "
            f"{math.ceil(needed - 1e-9)} usable items (L / r), but the pool has {pool.n_items}"
        )


def target_margin(r_max, k_examinees, n_capped=1, *, confidence=0.99):
    """How far below ``r`` the calibration aims so that fresh simulees stay under ``r + 3 SE``.

    ``z_n sqrt(r (1 - r) / N_K)`` with ``z_n = Phi^-1(confidence ** (1 / n))``: the final
    parameters are estimated from ``N_K`` simulees (the averaged iterations), so each capped
    item's true rate sits at the target plus an error of SD ``sqrt(r (1 - r) / N_K)``; aiming
    ``z_n`` of those SDs below ``r`` keeps all ``n`` capped items' true rates at or below ``r``
    with probability ``confidence``, and the validation's own noise is then covered by its
    ``3 SE`` for any validation size (see :mod:`qbank.exposure._calibrate`). Shrinks like
    ``1 / sqrt(N_K)``.

    Returns
    -------
    float or ndarray of shape (n_strata,)
        0 where ``N_K`` is 0 (nothing to control there).
    """
    n_capped = np.maximum(np.asarray(n_capped, dtype=float), 1.0)
    z = norm.ppf(confidence ** (1.0 / n_capped))
    n = np.asarray(k_examinees, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        margin = np.where(n > 0, z * np.sqrt(r_max * (1.0 - r_max) / n), 0.0)
    return float(margin) if np.ndim(margin) == 0 else margin


def validation_limit(r_max, n_examinees):
    """The largest exposure rate a validation on ``N`` fresh simulees accepts: ``r + 3 SE(N)``,
    ``SE = sqrt(r (1 - r) / N)`` (per controlled stratum; ``inf`` where ``N`` is 0). A rate
    above ``r`` but within it is what noise alone gives an item whose true rate is ``r``; a rate
    above it is not (probability 0.00135 per item)."""
    return r_max + 3.0 * monte_carlo_se(r_max, n_examinees)


def stratum_labels(cuts) -> list[str]:
    """Readable labels of the theta strata defined by ``cuts``."""
    cuts = [f"{c:g}" for c in np.asarray(cuts, dtype=float)]
    if not cuts:
        return ["all"]
    return (
        [f"theta < {cuts[0]}"]
        + [f"{lo} <= theta < {hi}" for lo, hi in itertools.pairwise(cuts)]
        + [f"theta >= {cuts[-1]}"]
    )
