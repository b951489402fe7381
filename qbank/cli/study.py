"""``qbank study``: run a simulation study described by a TOML file (see ``simulations/``)."""

from __future__ import annotations

import click

from qbank.cli._common import out_dir, scheduler_client, scheduler_option
from qbank.pool import PoolError
from qbank.study import load_study, run_study


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Report folder.")
@scheduler_option
def study(config, out_path, scheduler):
    """Run every condition of a study CONFIG on the same simulees and write a report.

    Progress counts tasks (done / total) over all conditions and replications."""
    try:
        cfg = load_study(config)
        out = out_dir(out_path)
        with scheduler_client(scheduler) as client:
            table, _ = run_study(cfg, out, progress=True, client=client)
    except (ValueError, PoolError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table.to_string(float_format=lambda x: f"{x:.4g}"))
    click.echo(f"report: {out / 'report.md'}")
