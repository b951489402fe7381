"""``qbank analytics export`` and ``qbank analytics targets``: the service database to a Parquet
snapshot, and blueprint targets into it. They join the core's ``qbank analytics`` group through
the ``qbank.cli`` entry points (``service.cli.COMMANDS``)."""

from __future__ import annotations

import click

from qbank.cli._common import out_dir
from service.cli.serve import _session, _tenant

_DB_HELP = "SQLAlchemy URL of the service database (default: $QBANK_DATABASE_URL, else sqlite:///qbank.db)"


def _database_url(url: str | None) -> str:
    from service.core.config import DatabaseSettings

    return url or DatabaseSettings().database_url


@click.command()
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


@click.command()
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
