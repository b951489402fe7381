"""``qbank analytics``: export the service database to Parquet, report on it with DuckDB, and
load blueprint targets.

``export`` and ``targets`` import the ``service`` package inside the command, so the rest of
the CLI works without the web stack; ``report`` needs only the snapshot folder.
"""

from __future__ import annotations

import click

from qbank.cli._common import out_dir

_DB_HELP = "SQLAlchemy URL of the service database (default: $QBANK_DATABASE_URL, else sqlite:///qbank.db)"


def _database_url(url: str | None) -> str:
    from service.core.config import DatabaseSettings

    return url or DatabaseSettings().database_url


@click.group()
def analytics():
    """Topic mastery, blueprint coverage, exposure and selector A/B analytics."""


@analytics.command()
@click.option("--db", "db_url", help=_DB_HELP)
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Snapshot folder.")
@click.option("--tenant", help="Export this tenant only (default: all tenants).")
@click.option("--no-views", is_flag=True, help="Skip the database views (facts only).")
def export(db_url, out_path, tenant, no_views):
    """Write a Parquet snapshot (facts and views) of the service database to --out."""
    from sqlalchemy.exc import ArgumentError

    from service.analytics_export import ExportError, export_snapshot

    out = out_dir(out_path)
    try:
        manifest = export_snapshot(_database_url(db_url), out, tenant_id=tenant, include_views=not no_views)
    except ArgumentError as exc:
        raise click.BadParameter(str(exc), param_hint="--db") from None
    except (ExportError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, count in manifest["rows"].items():
        click.echo(f"{name:32s} {count:>10d} rows")
    click.echo(f"snapshot: {out} (revision {manifest['alembic_revision']})")


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


@analytics.command()
@click.argument("csv_path", metavar="FILE.csv", type=click.Path(exists=True, dir_okay=False))
@click.option("--db", "db_url", help=_DB_HELP)
@click.option(
    "--tenant", help="Tenant id (default: $QBANK_DEFAULT_TENANT, else the built-in default tenant)."
)
@click.option("--actor", default="qbank-cli", show_default=True, help="Recorded as updated_by.")
def targets(csv_path, db_url, tenant, actor):
    """Replace the blueprint targets of the exams in FILE.csv (columns exam_code, topic,
    difficulty_label, target_items; topic is a topic name or id)."""
    import pandas as pd

    from qbank.cli.serve import _session, _tenant
    from service.analytics_export import ExportError, set_blueprint_targets

    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{csv_path}: {exc}", param_hint="FILE.csv") from None
    tenant_id = _tenant(tenant)
    with _session(_database_url(db_url)) as session:
        try:
            n_rows = set_blueprint_targets(session, tenant_id, frame, actor)
        except ExportError as exc:
            raise click.BadParameter(f"{csv_path}: {exc}", param_hint="FILE.csv") from None
    click.echo(f"{n_rows} blueprint targets set for tenant {tenant_id}")
