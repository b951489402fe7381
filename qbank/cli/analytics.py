"""``qbank analytics``: report with DuckDB on a Parquet snapshot of the service database, or build
that snapshot from the event stream that ``qbank relay`` publishes (``consume``).

``report`` needs only the snapshot folder, ``consume`` the NATS server. The delivery service adds ``export`` (database to
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


@analytics.command()
@click.option(
    "--broker",
    "broker_url",
    required=True,
    envvar="QBANK_BROKER_URL",
    help="NATS server the relay publishes to: nats://host:4222 (or $QBANK_BROKER_URL).",
)
@click.option("--stream", default="QBANK_EVENTS", show_default=True, help="JetStream stream name.")
@click.option(
    "--catalog",
    "catalog_path",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A snapshot (from `qbank analytics export`) whose topics, questions, publications and "
    "blueprint targets are used: those are not events.",
)
@click.option("--out", "out_path", required=True, type=click.Path(file_okay=False), help="Snapshot folder.")
def consume(broker_url, stream, catalog_path, out_path):
    """Build a snapshot from the event stream (quizzes, served items, answers) instead of the database."""
    from urllib.parse import urlsplit

    from qbank.analytics import SnapshotError, read_nats_stream, write_stream_snapshot

    parts = urlsplit(broker_url)
    if parts.scheme != "nats" or not parts.hostname:
        raise click.BadParameter(f"{broker_url!r}: expected nats://host:port", param_hint="--broker")
    server = f"nats://{parts.hostname}:{parts.port or 4222}"
    try:
        events = read_nats_stream(server, stream)
    except Exception as exc:  # the client's errors (no server, no such stream) share no base class
        raise click.ClickException(
            f"cannot read stream {stream} at {server}: {type(exc).__name__}: {exc}"
        ) from None
    out = out_dir(out_path)
    try:
        manifest = write_stream_snapshot(events, catalog_path, out, source=f"{server} stream {stream}")
    except SnapshotError as exc:
        raise click.BadParameter(str(exc), param_hint="--catalog") from None
    for name, count in manifest["rows"].items():
        click.echo(f"{name:32s} {count:>10d} rows")
    click.echo(f"snapshot: {out} ({len(events)} events from {server} stream {stream})")
