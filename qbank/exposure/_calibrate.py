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

Reaching the bound on fresh simulees. A validation on ``N_V`` fresh simulees accepts the
largest rate up to ``r + 3 SE_V`` (``SE_V = sqrt(r (1 - r) / N_V)``, see
:func:`validation_limit`). The classic procedure aims at ``r`` itself and stops on the first
iterations within ``r + tol``; its parameters then carry the noise of the last ``N`` simulees,
so about half of the capped items have a true rate above ``r`` by up to ``z_n SE(N)`` and a fresh
sample adds its own noise on top: the maximum over 100-odd capped items lands a little above the
limit (0.2136 against 0.2085 on the demo pool at r = 0.2). Derivation of the design used here:

1. Update (unchanged at the fixed point): ``K_i <- K_i r' / P(A_i)`` capped at 1 is exactly the
   classic ``K_i = r' / P(S_i)``, because with one uniform per (examinee, item)
   ``P(A_i) = K_i P(S_i)``; for item eligibility it is their eq. 13.
2. Average the final parameters: with ``K`` from iteration ``t`` a function of that iteration's
   independent noise only (``K_{t+1} = r' / P(S_i; K_t)``), the mean of the parameters used in the
   last ``w`` passing iterations has the noise of ``N_K = w N`` simulees (Polyak & Juditsky 1992:
   averaging the iterates of a stochastic approximation).
3. Aim below ``r`` by :func:`target_margin` ``delta = z_n sqrt(r (1 - r) / N_K)``,
   ``z_n = Phi^-1(0.99^(1/n))`` for ``n`` capped items: then all capped items' true rates are
   ``<= r`` with probability 0.99, and a fresh sample's own noise is what the ``3 SE_V`` of the
   limit is there for. The margin shrinks like ``1 / sqrt(N_K)``: about 0.006 for
   ``r = 0.2``, ``N = 20,000``, ``w = 3`` and 130 capped items (per stratum with the stratum's ``N``
   for conditional control).
4. Converge when, for ``w`` consecutive iterations, ``max_i P(A_i) <= r' + tol`` (``tol`` =
   :func:`noise_tolerance`, the spread of the maximum of ``n`` capped rates) and the update is
   stable; the calibration's parameters are then the average of those ``w`` iterations'.

The loop is "simulate counts with the given parameters -> update the parameters" (one
:func:`qbank.simulate` call per iteration), so the simulation step can run anywhere.

References
----------
Polyak, B. T. & Juditsky, A. B. (1992). Acceleration of stochastic approximation by averaging.
*SIAM Journal on Control and Optimization*, 30, 838-855.
Sympson, J. B. & Hetter, R. D. (1985). Controlling item-exposure rates in computerized adaptive
testing. *Proc. 27th Annual Meeting of the Military Testing Association*, 973-977.
Stocking, M. L. & Lewis, C. (1998). Controlling item exposure conditional on ability in
computerized adaptive testing. *Journal of Educational and Behavioral Statistics*, 23, 57-75.
van der Linden, W. J. & Veldkamp, B. P. (2004). Constraining item exposure in computerized
adaptive testing with shadow tests. *Journal of Educational and Behavioral Statistics*, 29,
273-291 (eligibility update, eq. 13).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from qbank.estimation import EAP
from qbank.pool import ItemPool
from qbank.selection import Selector
from qbank.simulation import simulate
from qbank.stopping import FixedLength

from ._updates import (
    METHODS,
    _as_2d,
    _k_shift,
    _Tallies,
    check_exposure_target,
    eligibility_update,
    monte_carlo_se,
    noise_tolerance,
    sympson_hetter_update,
    target_margin,
)

__all__ = ["ExposureCalibration", "calibrate_exposure"]

# Confidence that every capped item's true rate is at or below r (target_margin).
MARGIN_CONFIDENCE = 0.99


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
        When converged, the mean of the parameters of the ``window`` passing iterations; else the
        update after the last iteration (a start for another run). In pool order; per estimate
        stratum when conditional.
    strata_cuts : ndarray of shape (n_strata - 1,) or None
    converged : bool
    n_iterations : int
    trace : pandas.DataFrame
        One row per (iteration, true stratum): ``max_exposure``, ``max_selection_rate``,
        ``n_capped``, ``target`` (``r`` less :func:`target_margin`), ``tolerance``, ``k_shift``,
        ``within_tolerance`` (max exposure <= target + tolerance), ``k_stable`` and the
        iteration's ``rmse``, ``tests_ended_short`` and ``wall_seconds``.
    tolerance : ndarray of shape (n_strata,)
        Tolerance of the last iteration, per true stratum (one entry when unconditional).
    target : ndarray of shape (n_strata,)
        The rate the last iteration aimed at, ``r`` less the margin, per true stratum.
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
    target: np.ndarray | None = None

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
    def rules(self):
        """The complete rules these parameters run under (:func:`qbank.rules.rules_from_settings`)."""
        from qbank.rules import rules_from_settings

        return rules_from_settings(
            self.selector, estimator=self.estimator, stopping=self.stopping, exposure_target=self.r_max
        )

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


def _selector(sh_p, cuts) -> Selector:
    if cuts is not None:
        return Selector("conditional_sympson_hetter", sh_p=sh_p, theta_cuts=cuts)
    return Selector("sympson_hetter", sh_p=sh_p[:, 0])


def _update(method, sh_p, tallies: _Tallies, r_max, window, tol, confidence):
    """New parameters from one iteration's tallies, with the target, tolerance and implied change,
    each per true stratum (n_strata,)."""
    selection_rate, exposure_rate = tallies.selection_rate, tallies.exposure_rate
    n_capped = (selection_rate > r_max).sum(axis=0)
    margin = target_margin(r_max, window * tallies.examinees, n_capped, confidence=MARGIN_CONFIDENCE)
    target = np.atleast_1d(r_max - margin)
    if method == "sympson_hetter":
        new_sh_p = sympson_hetter_update(selection_rate, target, used=tallies.selections > 0)
        rate_at_lever = tallies.selections / tallies.per_examinee[:, :, None]
    else:
        new_sh_p = eligibility_update(sh_p, exposure_rate, target, used=tallies.administrations > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # Eligibility counts administrations only: P(A | eligible) = P(A) / p at each lever.
            rate_at_lever = np.where(sh_p[:, None, :] > 0, tallies.administrations / sh_p[:, None, :], 0.0)
        rate_at_lever = rate_at_lever / tallies.per_examinee[:, :, None]
    if tol is None:
        tolerance = noise_tolerance(
            r_max, tallies.examinees, n_capped, k_examinees=tallies.examinees, confidence=confidence
        )
    else:
        tolerance = np.where(tallies.examinees > 0, tol, np.inf)
    return new_sh_p, target, np.atleast_1d(tolerance), _k_shift(sh_p, new_sh_p, rate_at_lever)


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
    warm_up_examinees: int | None = None,
    rng=None,
    progress: bool = False,
    client=None,
) -> ExposureCalibration:
    """Iterate exposure-control parameters until fresh simulees will meet ``r_max + 3 SE``.

    Each iteration simulates ``n_examinees`` fresh simulees (the exact selection, estimation
    and stopping rules the service uses), tallies selections and administrations, and updates
    the parameters (:func:`sympson_hetter_update` or :func:`eligibility_update`) towards the
    target ``r' = r - margin`` (:func:`target_margin` for ``window * n_examinees`` simulees,
    per true stratum). It stops when, for ``window`` consecutive iterations and in every
    controlled stratum, ``max_i P(A_i) <= r' + tol`` and the update is stable (the largest
    exposure change it implies, ``max_i sum_k |dK_ik| s_ijk``, is ``<= tol``); the result's
    parameters are the mean of those ``window`` iterations' (see the module docstring for the
    derivation). After ``max_iter`` iterations it stops with ``converged = False``.

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
        Tolerance above the target ``r'``; default :func:`noise_tolerance` per stratum and iteration
        (``N = N_K`` = the stratum's simulees, ``n`` = items with ``P(S_i | j) > r``).
    window : int
        Consecutive iterations that must pass; their parameters are averaged.
    confidence : float
        Level of the default tolerance.
    theta_distribution, theta_params
        Target population (see :func:`qbank.draw_abilities`).
    sh_p_start : ndarray of shape (n_items,) or (n_items, n_strata), optional
        Starting parameters (default all 1, as the classic procedure); e.g. a previous bundle's.
    warm_up_examinees : int, optional
        Simulees per iteration while the parameters are still far from their fixed point
        (default ``n_examinees // 4``; ``n_examinees`` turns the warm-up off). Iterations run on
        this smaller sample until one meets ``r' + tol`` at its own noise level; from then on
        every iteration has ``n_examinees`` simulees, and only those count towards convergence
        (far from the fixed point the update's error is the distance to it, not noise).
    rng : int or numpy.random.Generator
        Seed; each iteration gets its own child generator (``rng.spawn``).
    progress : bool
        tqdm bar over iterations.
    client : dask.distributed.Client or qbank.scale_out.LocalProcesses, optional
        Run each iteration's simulation as tasks on this Dask cluster or on forked processes of
        this machine (same result bit for bit; docs/scale-out.md). Default: in this process.

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
        ("warm_up_examinees", 1 if warm_up_examinees is None else warm_up_examinees, 1),
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
    warm_up_examinees = max(n_examinees // 4, 1) if warm_up_examinees is None else warm_up_examinees
    warming = warm_up_examinees < n_examinees
    rows, passed, used_sh_p = [], [], []
    start_time = time.perf_counter()
    converged = False
    iteration = 0
    for iteration in iterations:
        # simulate counts with the given parameters ...
        result = simulate(
            pool,
            n_examinees=warm_up_examinees if warming else n_examinees,
            theta_distribution=theta_distribution,
            theta_params=theta_params,
            stopping=stopping,
            selector=_selector(sh_p, cuts),
            estimator=estimator,
            rng=rng.spawn(1)[0],
            exposure_target=r_max,
            keep_examinees=False,
            keep_estimates=False,  # counts only: the update and the trace need nothing per examinee
            strata_cuts=cuts,
            client=client,
        )
        tallies = _Tallies.of(result, conditional)
        # ... then update the parameters
        new_sh_p, target, tolerance, shift = _update(method, sh_p, tallies, r_max, window, tol, confidence)
        selection_rate, exposure_rate = tallies.selection_rate, tallies.exposure_rate
        n_capped = (selection_rate > target).sum(axis=0)
        max_exposure = exposure_rate.max(axis=0)
        within = max_exposure <= target + tolerance
        stable = shift <= tolerance
        summary = result.summary
        for j in range(n_strata):
            rows.append(
                {
                    "iteration": iteration,
                    "stratum": j,
                    "n_examinees": int(tallies.examinees[j]),
                    "warm_up": bool(tallies.examinees.sum() < n_examinees),
                    "max_exposure": float(max_exposure[j]),
                    "max_selection_rate": float(selection_rate[:, j].max()),
                    "n_capped": int(n_capped[j]),
                    "target": float(target[j]),
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
        if warming:  # leave the warm-up once an iteration is within r' + tol at its own noise
            warming = not within.all()
            passed.append(False)
        else:
            passed.append(bool(within.all() and stable.all()))
        used_sh_p.append(sh_p)
        final_tallies = tallies
        if bar is not None:
            worst = int(np.argmax(max_exposure - target - tolerance))  # the stratum farthest above
            bar.set_postfix(
                max_exposure=f"{max_exposure[worst]:.4f}", limit=f"{target[worst] + tolerance[worst]:.4f}"
            )
        if len(passed) >= window and all(passed[-window:]):
            converged = True
            break
        sh_p = new_sh_p
    if bar is not None:
        bar.close()
    if converged:  # the mean of the passing iterations' parameters (Polyak averaging, module docstring)
        sh_p = np.mean(used_sh_p[-window:], axis=0)
    wall = time.perf_counter() - start_time

    trace = pd.DataFrame(rows)
    last = trace[trace["iteration"] == iteration]
    if converged:
        message = (
            f"converged after {iteration} iterations: max exposure within r' + tol and parameters stable "
            f"for the last {window} iterations (r' = r - margin, parameters averaged over them)"
        )
    else:
        worst = last.loc[(last["max_exposure"] - last["target"] - last["tolerance"]).idxmax()]
        message = (
            f"did NOT converge within {max_iter} iterations: last iteration max exposure "
            f"{worst['max_exposure']:.4f} (stratum {int(worst['stratum'])}) against r' + tol = "
            f"{worst['target'] + worst['tolerance']:.4f}, largest implied change {last['k_shift'].max():.4f}"
        )
    settings = {
        "n_examinees": int(n_examinees),
        "warm_up_examinees": int(warm_up_examinees),
        "max_iter": int(max_iter),
        "window": int(window),
        "confidence": float(confidence),
        "margin_confidence": MARGIN_CONFIDENCE,
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
        target=last["target"].to_numpy(),
    )
