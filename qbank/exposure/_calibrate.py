"""Iterative calibration of exposure-control parameters and their validation on fresh simulees.

Two ways to reach the same target ``max_i P(A_i) <= r``, both run through the one
Sympson-Hetter selector of :mod:`qbank.selection` (so the service applies exactly what was
calibrated):

- ``sympson_hetter`` (Sympson & Hetter 1985): ``K_i = r / P(S_i)`` where ``P(S_i) > r``, else 1,
  from selection rates ``P(S_i)`` (selected = administered or withdrawn by the draw).
- ``item_eligibility`` (van der Linden & Veldkamp 2004): item ``i`` is eligible for a test with
  probability ``p_i``; ``p_i <- min(1, p_i r / P(A_i))`` from administration rates only. With one
  uniform per (examinee, item) drawn at the test start, "eligible iff u_i <= p_i" administers
  exactly the items that Sympson-Hetter with ``K = p`` administers (an item ranked above the
  administered one with ``u > K`` is exactly an ineligible one), so the methods differ only in
  what they count and in the update; the bundle carries ``p`` as ``sh_p``.

Conditional control (Stocking & Lewis 1998) keeps one parameter per item and theta stratum and
controls ``P(A_i | theta_j)`` by TRUE stratum ``j``, while the selector (like the service) looks
the parameter up by the stratum ``k`` of the *current estimate*. Early in a test the estimate
often sits in another stratum than the examinee's true one, so the parameter applied,
``K_ik``, serves several true strata. The update therefore takes, for each ``(i, k)``, the
strictest of the classic bounds of the true strata that were actually selected there:
``K_ik = min_{j: T_ijk > 0} (r / P(S_i | j) if P(S_i | j) > r else 1)``. Because
``P(A_i | j) = sum_k K_ik s_ijk`` with ``sum_k s_ijk = P(S_i | j)``, every true stratum then meets
``P(A_i | j) <= r`` at the current selection rates; with a single stratum it is the classic rule.
(The classic per-stratum update ``K_ij = r / P(S_i | j)`` stalls near ``P(A | j) = 0.36`` for
``r = 0.25`` on the demo pool because ``K_ij`` is not the parameter that the early steps apply.)

Monte-Carlo noise: ``P(A_i)`` from ``N`` simulees has standard error ``sqrt(r (1 - r) / N)`` at
``P = r``; a capped item's rate in an iteration also carries the noise of the ``K`` it was given
(estimated from the previous, independent ``N``), and the maximum over ``n`` capped items sits a
few SE above ``r``. The default tolerance is the ``confidence`` quantile of that maximum,
``z_n sqrt(r (1 - r)) sqrt(1 / N + 1 / N_K)`` with ``z_n = Phi^-1(confidence ** (1 / n))``
(see :func:`noise_tolerance`).

References
----------
Sympson, J. B. & Hetter, R. D. (1985). Controlling item-exposure rates in computerized adaptive
testing. *Proc. 27th Annual Meeting of the Military Testing Association*, 973-977.
Stocking, M. L. & Lewis, C. (1998). Controlling item exposure conditional on ability in
computerized adaptive testing. *Journal of Educational and Behavioral Statistics*, 23, 57-75.
van der Linden, W. J. & Veldkamp, B. P. (2004). Constraining item exposure in computerized
adaptive testing with shadow tests. *Journal of Educational and Behavioral Statistics*, 29,
273-291 (eligibility update, eq. 13).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from qbank.estimation import EAP
from qbank.pool import ItemPool
from qbank.selection import Selector
from qbank.simulation import SimulationResult, simulate
from qbank.stopping import FixedLength

__all__ = [
    "METHODS",
    "ExposureCalibration",
    "ExposureTargetError",
    "ExposureValidation",
    "calibrate_exposure",
    "check_exposure_target",
    "comparison_table",
    "eligibility_update",
    "monte_carlo_se",
    "noise_tolerance",
    "stratum_labels",
    "sympson_hetter_update",
    "validate_exposure",
]

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
    r_max : float
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
    r_max : float
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


@dataclass
class ExposureCalibration:
    """Outcome of :func:`calibrate_exposure`.

    Attributes
    ----------
    pool : ItemPool
    method : str
        'sympson_hetter' or 'item_eligibility'.
    r_max : float
    sh_p : ndarray of shape (n_items,) or (n_items, n_strata)
        The parameters of the last simulated iteration (whose exposure the trace shows), in pool
        order; per estimate stratum when conditional.
    strata_cuts : ndarray of shape (n_strata - 1,) or None
    converged : bool
    n_iterations : int
    trace : pandas.DataFrame
        One row per (iteration, true stratum): ``max_exposure``, ``max_selection_rate``,
        ``n_capped``, ``tolerance``, ``k_shift``, ``within_tolerance``, ``k_stable`` and the
        iteration's ``rmse``, ``tests_ended_short`` and ``wall_seconds``.
    tolerance : ndarray of shape (n_strata,)
        Tolerance of the last iteration, per true stratum (one entry when unconditional).
    examinees : ndarray of shape (n_strata,)
        Simulees per true stratum in the last iteration.
    settings : dict
        Everything needed to re-run: n_examinees, max_iter, window, confidence, seed,
        theta distribution, stopping, estimator, tolerance source.
    wall_seconds : float
    message : str
        Plain statement of the outcome.
    final_rates : dict
        ``selection`` and ``exposure``: P(S_i | j) and P(A_i | j) of the last iteration, each
        (n_items, n_strata) by true stratum (one column when unconditional).
    """

    pool: ItemPool
    method: str
    r_max: float
    sh_p: np.ndarray
    strata_cuts: np.ndarray | None
    converged: bool
    n_iterations: int
    trace: pd.DataFrame
    tolerance: np.ndarray
    examinees: np.ndarray
    stopping: object
    estimator: object
    settings: dict
    wall_seconds: float
    message: str
    final_rates: dict = field(default_factory=dict, repr=False)

    @property
    def conditional(self) -> bool:
        return self.strata_cuts is not None

    @property
    def selector(self) -> Selector:
        """The selector the service must use with these parameters."""
        if self.conditional:
            return Selector("conditional_sympson_hetter", sh_p=self.sh_p, theta_cuts=self.strata_cuts)
        return Selector("sympson_hetter", sh_p=self.sh_p)

    @property
    def monte_carlo_se(self) -> np.ndarray:
        """SE of an exposure rate near r per true stratum in the last iteration."""
        return monte_carlo_se(self.r_max, self.examinees)

    def sh_p_frame(self) -> pd.DataFrame:
        """``item_id, sh_p`` (or ``sh_p_0 .. sh_p_{m-1}`` per estimate stratum); the unconditional
        frame is a ``qbank simulate --k-file``."""
        frame = pd.DataFrame({"item_id": self.pool.item_id})
        if self.conditional:
            for k in range(self.sh_p.shape[1]):
                frame[f"sh_p_{k}"] = self.sh_p[:, k]
        else:
            frame["sh_p"] = self.sh_p
        return frame


def calibrate_exposure(
    pool: ItemPool,
    r_max: float,
    *,
    stopping=None,
    estimator=None,
    method: str = "sympson_hetter",
    strata_cuts=None,
    n_examinees: int = 20_000,
    max_iter: int = 50,
    tol: float | None = None,
    window: int = 3,
    confidence: float = 0.95,
    theta_distribution: str = "normal",
    theta_params=(0.0, 1.0),
    sh_p_start=None,
    rng=None,
    progress: bool = False,
) -> ExposureCalibration:
    """Iterate exposure-control parameters until the exposure rates meet ``r_max`` within noise.

    Each iteration simulates ``n_examinees`` fresh simulees (the exact selection, estimation
    and stopping rules the service uses), tallies selections and administrations, and updates
    the parameters (:func:`sympson_hetter_update` or :func:`eligibility_update`). It stops
    when, for ``window`` consecutive iterations and in every controlled stratum,
    ``max_i P(A_i) <= r + tol`` and the update is stable (the largest exposure change it
    implies, ``max_i sum_k |dK_ik| s_ijk``, is ``<= tol``), or after ``max_iter`` iterations
    with ``converged = False``.

    Parameters
    ----------
    pool : ItemPool
    r_max : float in (0, 1]
        Target maximum exposure rate ``r``.
    stopping : FixedLength or StandardError, default FixedLength(30)
    estimator : EAP, MAP or MLE, default EAP()
    method : {'sympson_hetter', 'item_eligibility'}
    strata_cuts : array_like of shape (n_strata - 1,), optional
        Theta cut points for conditional control (Stocking & Lewis 1998): parameters per
        stratum of the current estimate, exposure controlled per TRUE theta stratum.
    n_examinees : int
        Simulees per iteration.
    max_iter : int
    tol : float, optional
        Tolerance above ``r``; default :func:`noise_tolerance` per stratum and iteration
        (``N = N_K`` = the stratum's simulees, ``n`` = items with ``P(S_i | j) > r``).
    window : int
        Consecutive iterations that must pass.
    confidence : float
        Level of the default tolerance.
    theta_distribution, theta_params
        Target population (see :func:`qbank.draw_abilities`).
    sh_p_start : ndarray of shape (n_items,) or (n_items, n_strata), optional
        Starting parameters (default all 1, as the classic procedure); e.g. a previous bundle's.
    rng : int or numpy.random.Generator
        Seed; each iteration gets its own child generator (``rng.spawn``).
    progress : bool
        tqdm bar over iterations.

    Returns
    -------
    ExposureCalibration

    Raises
    ------
    ExposureTargetError
        Impossible target (see :func:`check_exposure_target`).
    ValueError
        Bad argument, naming it.
    """
    stopping = stopping or FixedLength(30)
    estimator = estimator or EAP()
    if not isinstance(pool, ItemPool):
        raise TypeError("pool must be a qbank.ItemPool (see qbank.load_pool)")
    check_exposure_target(pool, r_max, stopping)
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    for name, value, low in (
        ("n_examinees", n_examinees, 1),
        ("max_iter", max_iter, 1),
        ("window", window, 1),
    ):
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if tol is not None and not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    conditional = strata_cuts is not None
    cuts = None
    if conditional:
        cuts = np.asarray(strata_cuts, dtype=float).ravel()
        if cuts.size == 0 or not np.all(np.isfinite(cuts)) or np.any(np.diff(cuts) <= 0):
            raise ValueError(f"strata_cuts must be increasing finite cut points, got {cuts.tolist()}")
    n_strata = 1 if cuts is None else cuts.size + 1
    sh_p = np.ones((pool.n_items, n_strata))
    if sh_p_start is not None:
        start = _as_2d(sh_p_start)
        if start.shape != sh_p.shape or np.any(~np.isfinite(start)) or np.any((start < 0) | (start > 1)):
            raise ValueError(
                f"sh_p_start must have shape {sh_p.shape[: 1 + conditional]} with values in [0, 1]"
            )
        sh_p = start.copy()
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    rng = np.random.default_rng(rng)

    iterations = range(1, max_iter + 1)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = iterations = tqdm(iterations, desc=f"{method} iterations", unit="iter")
    rows, passed = [], []
    start_time = time.perf_counter()
    converged = False
    iteration = 0
    for iteration in iterations:
        selector = (
            Selector("conditional_sympson_hetter", sh_p=sh_p, theta_cuts=cuts)
            if conditional
            else Selector("sympson_hetter", sh_p=sh_p[:, 0])
        )
        result = simulate(
            pool,
            n_examinees=n_examinees,
            theta_distribution=theta_distribution,
            theta_params=theta_params,
            stopping=stopping,
            selector=selector,
            estimator=estimator,
            rng=rng.spawn(1)[0],
            exposure_target=r_max,
            keep_examinees=False,
            strata_cuts=cuts,
        )
        tallies = _Tallies.of(result, conditional)
        selection_rate, exposure_rate = tallies.selection_rate, tallies.exposure_rate
        if method == "sympson_hetter":
            new_sh_p = sympson_hetter_update(selection_rate, r_max, used=tallies.selections > 0)
            rate_at_lever = tallies.selections / tallies.per_examinee[:, :, None]
        else:
            new_sh_p = eligibility_update(sh_p, exposure_rate, r_max, used=tallies.administrations > 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                # Eligibility counts administrations only: P(A | eligible) = P(A) / p at each lever.
                rate_at_lever = np.where(
                    sh_p[:, None, :] > 0, tallies.administrations / sh_p[:, None, :], 0.0
                )
            rate_at_lever = rate_at_lever / tallies.per_examinee[:, :, None]
        n_capped = (selection_rate > r_max).sum(axis=0)
        if tol is None:
            tolerance = noise_tolerance(
                r_max, tallies.examinees, n_capped, k_examinees=tallies.examinees, confidence=confidence
            )
        else:
            tolerance = np.where(tallies.examinees > 0, tol, np.inf)
        tolerance = np.atleast_1d(tolerance)
        max_exposure = exposure_rate.max(axis=0)
        shift = _k_shift(sh_p, new_sh_p, rate_at_lever)
        within = max_exposure <= r_max + tolerance
        stable = shift <= tolerance
        summary = result.summary
        for j in range(n_strata):
            rows.append(
                {
                    "iteration": iteration,
                    "stratum": j,
                    "n_examinees": int(tallies.examinees[j]),
                    "max_exposure": float(max_exposure[j]),
                    "max_selection_rate": float(selection_rate[:, j].max()),
                    "n_capped": int(n_capped[j]),
                    "tolerance": float(tolerance[j]),
                    "k_shift": float(shift[j]),
                    "within_tolerance": bool(within[j]),
                    "k_stable": bool(stable[j]),
                    "overall_max_exposure": float(summary["max_exposure"]),
                    "rmse": float(summary["rmse"]),
                    "tests_ended_short": int(summary["tests_ended_pool_exhausted"]),
                    "wall_seconds": float(result.wall_seconds),
                }
            )
        passed.append(bool(within.all() and stable.all()))
        if bar is not None:
            worst = int(np.argmax(max_exposure - tolerance))  # the stratum farthest above its limit
            bar.set_postfix(
                max_exposure=f"{max_exposure[worst]:.4f}", limit=f"{r_max + tolerance[worst]:.4f}"
            )
        if len(passed) >= window and all(passed[-window:]):
            converged = True
            final_tallies = tallies
            break
        final_tallies = tallies
        sh_p = new_sh_p
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start_time

    trace = pd.DataFrame(rows)
    last = trace[trace["iteration"] == iteration]
    if converged:
        message = (
            f"converged after {iteration} iterations: max exposure within r + tol and parameters stable "
            f"for the last {window} iterations"
        )
    else:
        worst = last.loc[last["max_exposure"].idxmax()]
        message = (
            f"did NOT converge within {max_iter} iterations: last iteration max exposure "
            f"{worst['max_exposure']:.4f} (stratum {int(worst['stratum'])}) against r + tol = "
            f"{r_max + worst['tolerance']:.4f}, largest implied change {last['k_shift'].max():.4f}"
        )
    settings = {
        "n_examinees": int(n_examinees),
        "max_iter": int(max_iter),
        "window": int(window),
        "confidence": float(confidence),
        "seed": seed,
        "tolerance_source": "noise" if tol is None else "user",
        "theta_distribution": theta_distribution,
        "theta_params": [float(x) for x in theta_params],
    }
    return ExposureCalibration(
        pool=pool,
        method=method,
        r_max=float(r_max),
        sh_p=sh_p if conditional else sh_p[:, 0],
        strata_cuts=cuts,
        converged=converged,
        n_iterations=int(iteration),
        trace=trace,
        tolerance=last["tolerance"].to_numpy(),
        examinees=final_tallies.examinees.copy(),
        stopping=stopping,
        estimator=estimator,
        settings=settings,
        wall_seconds=wall,
        message=message,
        final_rates={"selection": final_tallies.selection_rate, "exposure": final_tallies.exposure_rate},
    )


@dataclass
class ExposureValidation:
    """Outcome of :func:`validate_exposure`: the final parameters on fresh simulees.

    Attributes
    ----------
    controlled, uncontrolled : SimulationResult
        With the calibrated parameters, and with plain maximum information on the same simulees
        (``uncontrolled`` is None when not requested). Both tally by theta stratum.
    r_max : float
    strata_cuts : ndarray
        The strata the results are tallied by (the calibration's, or :data:`REPORT_STRATA`).
    conditional : bool
        Whether exposure is controlled per stratum (else overall).
    max_exposure : ndarray of shape (n_controlled,)
        Largest exposure rate per controlled unit (per true stratum, or one overall value).
    tolerance : ndarray of shape (n_controlled,)
    tests_ended_short : int
        Tests that ended because exposure control left no item to give.
    converged : bool
        Whether the calibration converged.
    passed : bool
        ``converged``, every ``max_exposure <= r_max + tolerance`` and no test ended short.
    problems : list of str
        Why it did not pass.
    seed : int or None
    """

    controlled: SimulationResult
    uncontrolled: SimulationResult | None
    r_max: float
    strata_cuts: np.ndarray
    conditional: bool
    max_exposure: np.ndarray
    tolerance: np.ndarray
    tests_ended_short: int
    converged: bool
    passed: bool
    problems: list
    seed: int | None

    @property
    def n_examinees(self) -> int:
        return self.controlled.n_examinees

    def figures(self) -> pd.DataFrame:
        """Validation figures with and without exposure control (rows: metric)."""
        runs = {"with exposure control": self.controlled}
        if self.uncontrolled is not None:
            runs["without exposure control"] = self.uncontrolled
        keys = [
            "max_exposure",
            "items_over_target",
            "items_never_used",
            "overlap_rate",
            "bias",
            "rmse",
            "mean_se",
            "mean_length",
            "tests_ended_pool_exhausted",
            "wall_seconds",
        ]
        frame = pd.DataFrame({label: {k: r.summary[k] for k in keys} for label, r in runs.items()})
        if not self.conditional:
            # Rates just above r are expected from noise; above r + tol they are not.
            limit = self.r_max + float(self.tolerance[0])
            frame.loc["items_over_limit"] = [int((r.exposure_rate > limit).sum()) for r in runs.values()]
        frame = frame.rename(
            index={"items_over_target": "items_over_r_max", "tests_ended_pool_exhausted": "tests_ended_short"}
        )
        frame.index.name = "metric"
        return frame

    def stratum_frame(self) -> pd.DataFrame:
        """Per true theta stratum: simulees, max exposure with and without control, and (when
        controlled per stratum) the tolerance."""
        labels = stratum_labels(self.strata_cuts)
        _, exposure = self.controlled.stratum_rates()
        frame = pd.DataFrame(
            {
                "stratum": labels,
                "n_examinees": self.controlled.stratum_examinee_count,
                "max_exposure": np.nan_to_num(exposure).max(axis=0),
            }
        )
        if self.conditional:
            frame["tolerance"] = self.tolerance
            frame["limit"] = self.r_max + self.tolerance
            frame["items_over_limit"] = (np.nan_to_num(exposure) > frame["limit"].to_numpy()).sum(axis=0)
        if self.uncontrolled is not None:
            frame["max_exposure_uncontrolled"] = np.nan_to_num(self.uncontrolled.stratum_rates()[1]).max(
                axis=0
            )
        return frame


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


def validate_exposure(
    calibration: ExposureCalibration,
    *,
    n_examinees: int = 50_000,
    rng=None,
    compare_uncontrolled: bool = True,
    progress: bool = False,
) -> ExposureValidation:
    """Check the calibrated parameters on fresh simulees (new seed, same rules and population).

    Passes when the calibration converged, the largest exposure rate (per true stratum when
    conditional) is within ``r_max + tolerance`` and no test ended because exposure control
    left no item. The tolerance is :func:`noise_tolerance` with ``N`` = validation simulees
    and ``N_K`` = calibration simulees of the last iteration (the parameters carry that noise),
    or the calibration's user tolerance.

    Parameters
    ----------
    calibration : ExposureCalibration
    n_examinees : int
        Fresh simulees (the CLI default is 50,000).
    rng : int or numpy.random.Generator
        Must differ from the calibration's seed.
    compare_uncontrolled : bool
        Also run plain maximum information on the same simulees (the price of control in RMSE).
    progress : bool

    Returns
    -------
    ExposureValidation
    """
    if not isinstance(n_examinees, (int, np.integer)) or n_examinees < 2:
        raise ValueError(f"n_examinees must be an integer >= 2, got {n_examinees!r}")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    if seed is not None and seed == calibration.settings.get("seed"):
        raise ValueError(f"validation needs fresh simulees: seed {seed} is the calibration's seed")
    rng = np.random.default_rng(rng)
    settings = calibration.settings
    cuts = calibration.strata_cuts if calibration.conditional else np.asarray(REPORT_STRATA)
    common = dict(
        stopping=calibration.stopping,
        estimator=calibration.estimator,
        exposure_target=calibration.r_max,
        keep_examinees=False,
        strata_cuts=cuts,
        progress=progress,
    )
    seeds = rng.spawn(2)
    controlled = simulate(
        calibration.pool,
        n_examinees=n_examinees,
        theta_distribution=settings["theta_distribution"],
        theta_params=tuple(settings["theta_params"]),
        selector=calibration.selector,
        rng=seeds[0],
        **common,
    )
    uncontrolled = None
    if compare_uncontrolled:
        uncontrolled = simulate(
            calibration.pool, theta=controlled.theta, selector=Selector("max_info"), rng=seeds[1], **common
        )
    r_max = calibration.r_max
    if calibration.conditional:
        selection, exposure = controlled.stratum_rates()
        selection, exposure = np.nan_to_num(selection), np.nan_to_num(exposure)
        n_val, n_cal = controlled.stratum_examinee_count, calibration.examinees
    else:
        selection, exposure = controlled.selection_rate[:, None], controlled.exposure_rate[:, None]
        n_val, n_cal = np.array([controlled.n_examinees]), np.array([calibration.examinees.sum()])
    if settings["tolerance_source"] == "user":
        tolerance = np.full(n_val.shape, float(calibration.tolerance.max()))
    else:
        tolerance = np.atleast_1d(
            noise_tolerance(
                r_max,
                n_val,
                (selection > r_max).sum(axis=0),
                k_examinees=n_cal,
                confidence=settings["confidence"],
            )
        )
    max_exposure = exposure.max(axis=0)
    problems = []
    if not calibration.converged:
        problems.append(f"the calibration did not converge ({calibration.message})")
    labels = stratum_labels(calibration.strata_cuts) if calibration.conditional else ["overall"]
    for label, value, tol in zip(labels, max_exposure, tolerance):
        if value > r_max + tol:
            problems.append(
                f"max exposure {value:.4f} ({label}) exceeds r_max + tolerance = {r_max + tol:.4f}"
            )
    short = int(controlled.pool_exhausted)
    if short:
        problems.append(f"{short} test(s) ended early because exposure control left no item to give")
    return ExposureValidation(
        controlled=controlled,
        uncontrolled=uncontrolled,
        r_max=r_max,
        strata_cuts=cuts,
        conditional=calibration.conditional,
        max_exposure=max_exposure,
        tolerance=tolerance,
        tests_ended_short=short,
        converged=calibration.converged,
        passed=not problems,
        problems=problems,
        seed=seed,
    )


def comparison_table(runs: dict) -> pd.DataFrame:
    """Side-by-side figures of calibrations, e.g. Sympson-Hetter against item eligibility.

    Parameters
    ----------
    runs : dict
        label -> (ExposureCalibration, ExposureValidation or None)

    Returns
    -------
    pandas.DataFrame
        One row per label: converged, iterations, calibration wall time and time per
        iteration, and the validation's max exposure, items over r, RMSE, bias and overlap.
    """
    rows = {}
    for label, (calibration, validation) in runs.items():
        row = {
            "method": calibration.method,
            "converged": calibration.converged,
            "iterations": calibration.n_iterations,
            "calibration_seconds": calibration.wall_seconds,
            "seconds_per_iteration": calibration.wall_seconds / max(calibration.n_iterations, 1),
        }
        if validation is not None:
            summary = validation.controlled.summary
            row.update(
                {
                    "validation_max_exposure": float(validation.max_exposure.max()),
                    "validation_passed": validation.passed,
                    "items_over_r_max": summary["items_over_target"],
                    "rmse": summary["rmse"],
                    "bias": summary["bias"],
                    "overlap_rate": summary["overlap_rate"],
                }
            )
        rows[label] = row
    frame = pd.DataFrame(rows).T.infer_objects()
    frame.index.name = "run"
    return frame
