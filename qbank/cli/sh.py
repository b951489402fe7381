"""``qbank sh``: calibrate Sympson-Hetter (or item-eligibility) parameters, validate them on fresh
simulees and write ``bundle.json`` + ``report.md`` to a folder.

Exit status: 0 when a validated bundle was written; 1 when the calibration did not converge or
the validation failed (the report says why; no bundle is written); 2 for bad input.
"""

from __future__ import annotations

import click
import numpy as np

from qbank.cli._common import (
    estimator_from_options,
    estimator_options,
    out_dir,
    parse_numbers,
    read_pool,
    scheduler_client,
    scheduler_option,
    stopping_from_options,
    stopping_options,
)
from qbank.exposure import (
    METHODS,
    BundleError,
    ExposureTargetError,
    build_bundle,
    calibrate_exposure,
    comparison_table,
    read_bundle,
    stratum_labels,
    validate_exposure,
    validation_limit,
    write_bundle,
    write_report,
)
from qbank.rules import rules_from_bundle


def load_bundle_or_fail(path: str, pool, option: str = "--bundle") -> dict:
    """Read and check a bundle against ``pool``; every problem becomes a click error naming ``option``."""
    try:
        return read_bundle(path, pool)
    except BundleError as exc:
        raise click.BadParameter(
            "\n  ".join([f"{path}: refused", *exc.problems]), param_hint=option
        ) from None


# Options of `qbank simulate` that a bundle fixes: a re-check runs the bundle's own rules.
_BUNDLE_FIXES = (
    "selector",
    "k_file",
    "length",
    "se_target",
    "min_length",
    "estimator",
    "dodd",
    "exposure_target",
)


def bundle_run_settings(path: str, pool) -> tuple[dict, dict]:
    """The checked bundle and the :func:`qbank.simulate` keywords that re-run it on ``pool``
    (``qbank simulate --bundle``); refuses options the bundle fixes when given explicitly."""
    from click.core import ParameterSource

    context = click.get_current_context()
    given = [
        name for name in _BUNDLE_FIXES if context.get_parameter_source(name) == ParameterSource.COMMANDLINE
    ]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(
            f"--bundle fixes the selector, K, stopping rule, estimator and r_max; drop {flags}"
        )
    bundle = load_bundle_or_fail(path, pool)
    return bundle, rules_from_bundle(bundle, pool).simulation_kwargs()


def recheck_lines(result, bundle: dict) -> list[str]:
    """Lines comparing a re-run of ``bundle`` (a SimulationResult) with the validation limit
    ``r_max + 3 SE`` of the re-run's own size (per controlled stratum)."""
    r_max = bundle["r_max"]
    if bundle["strata"] is not None:
        _, exposure = result.stratum_rates()
        maxima = np.nan_to_num(exposure).max(axis=0)
        labels = stratum_labels(bundle["strata"]["theta_cuts"])
        n_examinees = result.stratum_examinee_count
    else:
        maxima, labels = [result.summary["max_exposure"]], ["overall"]
        n_examinees = [result.n_examinees]
    limits = np.atleast_1d(validation_limit(r_max, np.asarray(n_examinees)))
    lines = []
    for label, value, limit, n in zip(labels, maxima, limits, np.atleast_1d(n_examinees)):
        verdict = "within" if value <= limit else "ABOVE"
        lines.append(
            f"bundle re-check, {label}: max exposure {value:.4f} {verdict} the limit r_max + 3 SE "
            f"{limit:.4f} ({int(n)} simulees)"
        )
    return lines


@click.command()
@click.option(
    "--pool", "pool_path", required=True, type=click.Path(dir_okay=False), help="Item pool CSV/Parquet."
)
@click.option("--r-max", type=float, required=True, help="Target maximum exposure rate r, in (0, 1].")
@stopping_options
@click.option(
    "--examinees",
    type=click.IntRange(min=1),
    default=20_000,
    show_default=True,
    help="Simulees per iteration.",
)
@click.option(
    "--validation-examinees",
    type=click.IntRange(min=2),
    default=50_000,
    show_default=True,
    help="Fresh simulees for the validation.",
)
@estimator_options
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default="sympson_hetter",
    show_default=True,
    help="Update rule: Sympson-Hetter (selection rates) or item eligibility (administration rates).",
)
@click.option("--compare", is_flag=True, help="Also run the other method and tabulate both.")
@click.option("--max-iter", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--tol",
    type=click.FloatRange(min=0),
    default=None,
    help="Convergence tolerance above the target r' (default: from the Monte-Carlo noise, see report.md).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Consecutive iterations that must meet r' + tol with stable parameters (their K are averaged).",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Level of the default tolerance.",
)
@click.option("--conditional", is_flag=True, help="Conditional Sympson-Hetter: parameters per theta stratum.")
@click.option(
    "--strata", "strata_text", default=None, help="Theta cut points with --conditional [default: -1,0,1]."
)
@click.option("--theta-dist", type=click.Choice(["normal", "uniform"]), default="normal", show_default=True)
@click.option(
    "--theta-params", default="0,1", show_default=True, help="mean,sd (normal) or low,high (uniform)."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration.")
@click.option("--validation-seed", type=int, default=None, help="Seed of the validation [default: seed + 1].")
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Output folder.")
@scheduler_option
def sh(
    pool_path,
    r_max,
    length,
    se_target,
    min_length,
    examinees,
    validation_examinees,
    estimator,
    dodd,
    method,
    compare,
    max_iter,
    tol,
    window,
    confidence,
    conditional,
    strata_text,
    theta_dist,
    theta_params,
    seed,
    validation_seed,
    out_path,
    scheduler,
):
    """Calibrate exposure-control parameters by iterated simulation (Sympson & Hetter 1985;
    conditional: Stocking & Lewis 1998; item eligibility: van der Linden & Veldkamp 2004),
    validate them on fresh simulees, and write bundle.json and report.md to --out."""
    pool = read_pool(pool_path)
    params = parse_numbers(theta_params, "--theta-params", count=2)
    cuts = None
    if strata_text is not None and not conditional:
        raise click.UsageError("--strata needs --conditional")
    if conditional:
        cuts = np.asarray(parse_numbers(strata_text or "-1,0,1", "--strata"))
        if np.any(np.diff(cuts) <= 0):
            raise click.BadParameter(f"cut points must increase, got {strata_text}", param_hint="--strata")
    stopping = stopping_from_options(length, se_target, min_length)
    validation_seed = seed + 1 if validation_seed is None else validation_seed
    if validation_seed == seed:
        raise click.BadParameter(
            "must differ from --seed: validation needs fresh simulees", param_hint="--validation-seed"
        )
    out = out_dir(out_path)

    common = dict(
        stopping=stopping,
        estimator=estimator_from_options(estimator, dodd, pool),
        strata_cuts=cuts,
        n_examinees=examinees,
        max_iter=max_iter,
        tol=tol,
        window=window,
        confidence=confidence,
        theta_distribution=theta_dist,
        theta_params=params,
        rng=seed,
        progress=True,
    )
    methods = [method] + ([m for m in METHODS if m != method] if compare else [])
    with scheduler_client(scheduler) as client:
        runs = {
            name: _calibrate_and_validate(
                pool, r_max, name, common, validation_examinees, validation_seed, client
            )
            for name in methods
        }

    calibration, validation = runs[method]
    comparison = comparison_table(dict(runs.items())) if compare else None
    bundle_path = None
    if validation is not None and validation.passed:
        bundle_path = write_bundle(build_bundle(calibration, validation), out / "bundle.json")
    paths = write_report(out, calibration, validation, bundle_path=bundle_path, comparison=comparison)
    if comparison is not None:
        click.echo(comparison.to_string())
    click.echo(f"report: {paths['report']}")
    if bundle_path is None:
        reasons = validation.problems if validation is not None else [calibration.message]
        raise click.ClickException("no bundle written: " + "; ".join(reasons))
    click.echo(f"bundle: {bundle_path}")


def _calibrate_and_validate(pool, r_max, name, common, validation_examinees, validation_seed, client):
    """One method's calibration and, when it converged, its validation (both echoed)."""
    try:
        calibration = calibrate_exposure(pool, r_max, method=name, client=client, **common)
    except ExposureTargetError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"{name}: {calibration.message} ({calibration.wall_seconds:.1f} s)")
    validation = None
    if calibration.converged:
        validation = validate_exposure(
            calibration, n_examinees=validation_examinees, rng=validation_seed, progress=True, client=client
        )
        limits = ", ".join(
            f"{m:.4f} <= {r_max + t:.4f}" if m <= r_max + t else f"{m:.4f} > {r_max + t:.4f}"
            for m, t in zip(validation.max_exposure, validation.tolerance)
        )
        click.echo(
            f"{name}: validation on {validation.n_examinees} fresh simulees "
            f"{'passed' if validation.passed else 'FAILED'}: max exposure {limits}; RMSE "
            f"{validation.controlled.summary['rmse']:.4f} (without control "
            f"{validation.uncontrolled.summary['rmse']:.4f})"
        )
    return calibration, validation
