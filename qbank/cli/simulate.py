"""``qbank simulate``: a CAT simulation study written to a folder."""

from __future__ import annotations

import json

import click

from qbank.cli._common import (
    estimator_from_options,
    estimator_options,
    out_dir,
    parse_numbers,
    read_k_file,
    read_pool,
    scheduler_client,
    scheduler_option,
    stopping_from_options,
    stopping_options,
)
from qbank.cli.sh import bundle_run_settings, recheck_lines
from qbank.rules import rules_from_settings
from qbank.simulation import simulate as run_simulation

SELECTORS = ["max_info", "randomesque", "sympson_hetter", "a_stratified"]


@click.command()
@click.option(
    "--pool", "pool_path", required=True, type=click.Path(dir_okay=False), help="Item pool CSV/Parquet."
)
@click.option(
    "--examinees", type=click.IntRange(min=1), default=10_000, show_default=True, help="Number of simulees."
)
@stopping_options
@click.option("--selector", type=click.Choice(SELECTORS), default="max_info", show_default=True)
@click.option(
    "--k",
    "randomesque_k",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Randomesque group size.",
)
@click.option(
    "--strata",
    "n_strata",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Number of a-strata.",
)
@click.option(
    "--k-file", type=click.Path(dir_okay=False), default=None, help="CSV item_id,sh_p for sympson_hetter."
)
@estimator_options
@click.option("--theta-dist", type=click.Choice(["normal", "uniform"]), default="normal", show_default=True)
@click.option(
    "--theta-params", default="0,1", show_default=True, help="mean,sd (normal) or low,high (uniform)."
)
@click.option(
    "--exposure-target",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.25,
    show_default=True,
    help="Rate for 'items over target'.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--bundle",
    "bundle_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Exposure bundle (qbank sh): re-run its K, strata, stopping, estimator and r_max to re-check it.",
)
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Output folder.")
@scheduler_option
def simulate(
    pool_path,
    examinees,
    length,
    se_target,
    min_length,
    selector,
    randomesque_k,
    n_strata,
    k_file,
    estimator,
    dodd,
    theta_dist,
    theta_params,
    exposure_target,
    seed,
    bundle_path,
    out_path,
    scheduler,
):
    """Simulate adaptive tests on a pool and write summary.json, exposure.csv,
    conditional.csv, examinees.parquet and PNG plots to --out."""
    pool = read_pool(pool_path)
    params = parse_numbers(theta_params, "--theta-params", count=2)
    if length > pool.n_items:
        raise click.BadParameter(f"{length} exceeds the pool's {pool.n_items} items", param_hint="--length")
    sh_p = None
    if selector == "sympson_hetter":
        if k_file is None:
            raise click.UsageError(
                "--selector sympson_hetter needs --k-file (or run `qbank sh` to compute one)"
            )
        sh_p = read_k_file(k_file, pool)
    elif k_file is not None:
        raise click.UsageError("--k-file only applies to --selector sympson_hetter")
    stopping = stopping_from_options(length, se_target, min_length)
    bundle = None
    if bundle_path is not None:  # refuses the options it fixes before reading them
        bundle, run = bundle_run_settings(bundle_path, pool)
    else:
        run = rules_from_settings(
            selector,
            k=randomesque_k,
            n_strata=n_strata,
            sh_p=sh_p,
            estimator=estimator_from_options(estimator, dodd, pool),
            stopping=stopping,
            exposure_target=exposure_target,
        ).simulation_kwargs()
    out = out_dir(out_path)
    with scheduler_client(scheduler) as client:
        result = run_simulation(
            pool,
            n_examinees=examinees,
            theta_distribution=theta_dist,
            theta_params=params,
            rng=seed,
            progress=True,
            client=client,
            **run,
        )
    paths = result.to_dir(out)
    summary = result.summary
    click.echo(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "n_examinees",
                    "bias",
                    "rmse",
                    "mean_se",
                    "max_exposure",
                    "items_never_used",
                    "overlap_rate",
                    "wall_seconds",
                )
            },
            indent=2,
        )
    )
    for name, path in paths.items():
        click.echo(f"{name:>17}: {path}")
    for line in recheck_lines(result, bundle) if bundle is not None else []:
        click.echo(line)
