"""Validation of calibrated exposure-control parameters on fresh simulees.

A calibration validates only when, on ``N`` fresh simulees (new seed, same rules and
population), every controlled unit's largest exposure rate (overall, or per TRUE theta stratum
for conditional control) is at most :func:`validation_limit` ``= r + 3 sqrt(r (1 - r) / N)``,
the calibration converged and no test ended because exposure control left no item.

"Over r_max" and "over the limit" differ: an item whose true rate is exactly ``r`` shows an
observed rate above ``r`` half the time by Monte-Carlo noise, but above ``r + 3 SE`` only with
probability 0.00135; the calibration aims below ``r`` (:func:`target_margin`) so that the
largest of all items stays under the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qbank.rules import rules_from_settings
from qbank.simulation import SimulationResult, simulate

from ._calibrate import ExposureCalibration
from ._updates import REPORT_STRATA, stratum_labels, validation_limit

__all__ = ["ExposureValidation", "comparison_table", "validate_exposure"]


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
        ``3 SE`` of the validation per controlled unit: the limit is ``r_max + tolerance``
        (:func:`validation_limit`).
    tests_ended_short : int
        Tests that ended because exposure control left no item to give.
    converged : bool
        Whether the calibration converged.
    passed : bool
        ``converged``, every ``max_exposure <= r_max + 3 SE`` and no test ended short.
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
            # Rates just above r are expected from noise; above r + 3 SE they are not.
            limit = self.r_max + float(self.tolerance[0])
            frame.loc["items_over_limit"] = [int((r.exposure_rate > limit).sum()) for r in runs.values()]
        frame = frame.rename(
            index={"items_over_target": "items_over_r_max", "tests_ended_pool_exhausted": "tests_ended_short"}
        )
        frame.index.name = "metric"
        return frame

    def items_over_limit(self) -> pd.DataFrame:
        """Items whose validated exposure rate exceeds the limit ``r_max + 3 SE`` (per true stratum
        when conditional): ``item_id, stratum, exposure_rate, limit``, largest first."""
        pool = self.controlled.pool
        if self.conditional:
            _, exposure = self.controlled.stratum_rates()
            labels = stratum_labels(self.strata_cuts)
        else:
            exposure, labels = self.controlled.exposure_rate[:, None], ["overall"]
        limits = self.r_max + self.tolerance
        item, unit = np.nonzero(np.nan_to_num(exposure) > limits[None, :])
        frame = pd.DataFrame(
            {
                "item_id": pool.item_id[item],
                "stratum": [labels[j] for j in unit],
                "exposure_rate": exposure[item, unit],
                "limit": limits[unit],
            }
        )
        return frame.sort_values("exposure_rate", ascending=False, kind="stable").reset_index(drop=True)

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


def validate_exposure(
    calibration: ExposureCalibration,
    *,
    n_examinees: int = 50_000,
    rng=None,
    compare_uncontrolled: bool = True,
    progress: bool = False,
    client=None,
) -> ExposureValidation:
    """Check the calibrated parameters on fresh simulees (new seed, same rules and population).

    Passes when the calibration converged, the largest exposure rate (per true stratum when
    conditional) is at most :func:`validation_limit` ``= r_max + 3 sqrt(r (1 - r) / N)`` with
    ``N`` the validation's simulees (in that stratum), and no test ended because exposure
    control left no item.

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
    client : dask.distributed.Client or qbank.scale_out.LocalProcesses, optional
        Run the simulations as tasks on this Dask cluster or on forked processes of this
        machine (same result bit for bit).

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
    # The same builder as every other CAT (qbank.rules): the controlled run under the calibrated
    # selector, the comparison under plain maximum information, both with the calibration's
    # estimator and stopping rule.
    controlled_rules = rules_from_settings(
        calibration.selector,
        estimator=calibration.estimator,
        stopping=calibration.stopping,
        exposure_target=calibration.r_max,
    )
    uncontrolled_rules = rules_from_settings(
        "max_info",
        estimator=calibration.estimator,
        stopping=calibration.stopping,
        exposure_target=calibration.r_max,
    )
    common = dict(
        keep_examinees=False,
        keep_estimates=False,
        strata_cuts=cuts,
        progress=progress,
        client=client,
    )
    seeds = rng.spawn(2)
    controlled = simulate(
        calibration.pool,
        n_examinees=n_examinees,
        theta_distribution=settings["theta_distribution"],
        theta_params=tuple(settings["theta_params"]),
        rules=controlled_rules,
        rng=seeds[0],
        **common,
    )
    uncontrolled = None
    if compare_uncontrolled:
        uncontrolled = simulate(
            calibration.pool, theta=controlled.theta, rules=uncontrolled_rules, rng=seeds[1], **common
        )
    r_max = calibration.r_max
    if calibration.conditional:
        exposure = np.nan_to_num(controlled.stratum_rates()[1])
        n_val = controlled.stratum_examinee_count
    else:
        exposure, n_val = controlled.exposure_rate[:, None], np.array([controlled.n_examinees])
    tolerance = np.atleast_1d(validation_limit(r_max, n_val) - r_max)
    max_exposure = exposure.max(axis=0)
    problems = []
    if not calibration.converged:
        problems.append(f"the calibration did not converge ({calibration.message})")
    labels = stratum_labels(calibration.strata_cuts) if calibration.conditional else ["overall"]
    for label, value, tol in zip(labels, max_exposure, tolerance):
        if value > r_max + tol:
            problems.append(
                f"max exposure {value:.4f} ({label}) exceeds the limit r_max + 3 SE = {r_max + tol:.4f}"
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
