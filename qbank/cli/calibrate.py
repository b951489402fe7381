"""``qbank calibrate``: item parameters from responses, written as a pool CSV plus a JSON report."""

from __future__ import annotations

import warnings

import click

from qbank.calibration import (
    DICHOTOMOUS_MODELS,
    MODELS,
    CalibrationError,
    Calibrator,
    parse_prior,
    read_responses,
)
from qbank.cli._common import read_pool


def _prior(text, kind, option):
    try:
        return parse_prior(text, kind, option)
    except CalibrationError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@click.command()
@click.option(
    "--responses",
    "responses_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="CSV/Parquet: long (person_id,item_id,response) or wide (one column per item).",
)
@click.option(
    "--model",
    type=click.Choice(MODELS, case_sensitive=False),
    default="3PL",
    show_default=True,
    help="Item model. GRM (graded response) and GPCM (generalized partial credit) take responses scored "
    "0..m-1 in ordered categories, every category observed; see --dichotomous-model for mixed runs.",
)
@click.option(
    "--dichotomous-model",
    type=click.Choice(DICHOTOMOUS_MODELS, case_sensitive=False),
    default=None,
    help="With --model GRM|GPCM: items whose responses are only 0/1 get this model, the others the "
    "polytomous one (a mixed run). Default: every item gets the polytomous model (with 2 categories "
    "it is the 2PL).",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["auto", "wide", "long"]),
    default="auto",
    show_default=True,
    help="Input layout; auto = long when the three long columns are present.",
)
@click.option("--prior-c", default="beta:5,17", show_default=True, help="Beta prior on c (3PL), or 'none'.")
@click.option(
    "--prior-loga",
    default="normal:0,0.5",
    show_default=True,
    help="Normal prior (mean,sd) on log a, 'hierarchical[:mean,sd]' (mean re-estimated, Mislevy 1986), "
    "or 'none'.",
)
@click.option(
    "--prior-b",
    default="none",
    show_default=True,
    help="Normal prior (mean,sd) on b and on every GRM/GPCM threshold, 'hierarchical[:mean,sd]', or 'none'.",
)
@click.option(
    "--fixed-pool",
    "fixed_pool_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bank pool whose items stay fixed; only the other items are calibrated (Kim 2006).",
)
@click.option(
    "--latent",
    type=click.Choice(["normal", "histogram"]),
    default="normal",
    show_default=True,
    help="With --fixed-pool: the latent distribution re-estimated as a normal or as a histogram.",
)
@click.option(
    "--drop-invariant", is_flag=True, help="Drop items whose responses are all equal (with a warning)."
)
@click.option(
    "--max-iter", type=click.IntRange(min=1), default=500, show_default=True, help="Maximum EM cycles."
)
@click.option(
    "--tol",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-4,
    show_default=True,
    help="Stop when no a, b or c changes by more than this in one cycle.",
)
@click.option(
    "--quad-points",
    type=click.IntRange(min=5),
    default=41,
    show_default=True,
    help="Quadrature points on [-5, 5].",
)
@click.option(
    "--se-b-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Flag items whose difficulty SE exceeds this (logits) as poorly determined, and name them.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Output pool (CSV, or Parquet by extension); the report goes to <stem>.report.json beside it.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def calibrate(
    responses_path,
    model,
    dichotomous_model,
    input_format,
    prior_c,
    prior_loga,
    prior_b,
    fixed_pool_path,
    latent,
    drop_invariant,
    max_iter,
    tol,
    quad_points,
    se_b_limit,
    out_path,
    quiet,
):
    """Calibrate items by marginal maximum likelihood (Bock-Aitkin EM) and write a pool
    (D = 1) that `qbank simulate` and `qbank sh` read directly.

    Responses are 1/0 for dichotomous items and 0..m-1 for items scored in ordered categories
    (--model GRM or GPCM); polytomous items are written with columns model, b1, b2, ...
    """
    priors = {
        "prior_c": _prior(prior_c, "beta", "--prior-c"),
        "prior_loga": _prior(prior_loga, "normal", "--prior-loga"),
        "prior_b": _prior(prior_b, "normal", "--prior-b"),
    }
    fixed_pool = read_pool(fixed_pool_path, "--fixed-pool") if fixed_pool_path else None
    try:
        responses = read_responses(responses_path, input_format)
    except CalibrationError as exc:
        raise click.BadParameter(str(exc), param_hint="--responses") from None
    if dichotomous_model is not None and model.upper() not in ("GRM", "GPCM"):
        raise click.BadParameter(
            "only with --model GRM or GPCM (a mixed run)", param_hint="--dichotomous-model"
        )
    calibrator = Calibrator(
        model,
        dichotomous_model=dichotomous_model,
        fixed_pool=fixed_pool,
        latent=latent,
        drop_invariant=drop_invariant,
        max_iter=max_iter,
        tol=tol,
        n_quad=quad_points,
        se_b_limit=se_b_limit,
        progress=not quiet,
        **priors,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            calibrator.fit(responses)
        except CalibrationError as exc:
            hint = "--fixed-pool" if str(exc).startswith("fixed_pool") else "--responses"
            raise click.BadParameter(str(exc), param_hint=hint) from None
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    report = calibrator.report_
    try:
        paths = report.save(out_path)
    except OSError as exc:
        raise click.BadParameter(f"cannot write {out_path}: {exc}", param_hint="--out") from None
    summary = report.summary
    status = "converged" if summary["converged"] else "NOT converged"
    click.echo(
        f"{summary['model']}: {summary['n_items_estimated']} item(s) calibrated"
        + (
            f" ({summary['n_items_polytomous']} {summary['model']})"
            if summary.get("n_items_polytomous") is not None
            else ""
        )
        + (f" against {summary['n_items_fixed']} fixed" if summary["n_items_fixed"] else "")
        + f" from {summary['n_responses']} responses of {summary['n_persons']} persons; "
        f"{summary['iterations']} EM cycles ({status}), log-likelihood {summary['log_likelihood']:.2f}, "
        f"{summary['seconds']:.2f} s"
        + (
            f"; {summary['n_items_poorly_determined']} poorly determined (se_b > {se_b_limit:g} or at a bound, "
            "column poorly_determined in the report)"
            if summary["n_items_poorly_determined"]
            else ""
        )
    )
    click.echo(f"wrote {paths['pool']} and {paths['report']}")
