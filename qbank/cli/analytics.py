"""``qbank analytics``: report with DuckDB on a Parquet snapshot of the service database.

``report`` needs only the snapshot folder. The delivery service adds ``export`` (database to
snapshot) and ``targets`` (blueprint targets) to this group (``service.cli.analytics``).
"""

from __future__ import annotations

import click

from qbank.cli._common import out_dir
from qbank.cli._lazy import LazyGroup


@click.group(cls=LazyGroup, lazy={}, path="analytics")
def analytics():
    """Topic mastery, blueprint coverage, exposure and selector A/B analytics."""


@analytics.command()
@click.option(
    "--in",
    "in_path",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Snapshot folder written by `qbank analytics export`.",
)
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--tenant", help="Report on this tenant only.")
@click.option("--exam", help="Report on this exam code only.")
def report(in_path, out_path, tenant, exam):
    """Run the analyses with DuckDB over a snapshot and write tables, plots and report.md."""
    from qbank.analytics import SnapshotError, write_report

    out = out_dir(out_path)
    try:
        result = write_report(in_path, out, tenant_id=tenant, exam_code=exam)
    except SnapshotError as exc:
        raise click.BadParameter(str(exc), param_hint="--in") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for name, frame in result.results.items():
        click.echo(f"{name:24s} {len(frame):>8d} rows")
    mismatched = {k: v for k, v in result.view_check.items() if v not in ("match", "no view snapshot")}
    for name, verdict in mismatched.items():
        click.echo(f"warning: {name} differs from the database view: {verdict}", err=True)
    click.echo(f"report: {result.files['report']}")
