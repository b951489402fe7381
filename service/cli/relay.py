"""``qbank relay``: ship the outbox to a message broker (see :mod:`service.relay`)."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

import click

_DB_HELP = "SQLAlchemy URL (default: $QBANK_DATABASE_URL, else sqlite:///qbank.db)"


@click.command("relay")
@click.option(
    "--broker",
    "broker_url",
    required=True,
    envvar="QBANK_BROKER_URL",
    help="nats://host:4222[?stream=QBANK_EVENTS] or kafka://host:9092[?topic=events.qbank] "
    "(or $QBANK_BROKER_URL)",
)
@click.option("--once", is_flag=True, help="Ship what is unsent now, prune, and exit.")
@click.option("--database-url", help=_DB_HELP)
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option(
    "--poll-interval", type=click.FloatRange(0.01, 60), default=0.2, show_default=True, help="seconds"
)
@click.option(
    "--retention-hours",
    type=click.FloatRange(0, None),
    default=168.0,
    show_default=True,
    help="Sent events older than this are deleted from the outbox.",
)
@click.option("--verbose", "-v", is_flag=True, help="Log every retry and lease wait.")
def relay(broker_url, once, database_url, batch_size, poll_interval, retention_hours, verbose):
    """Publish the outbox's events to a broker, at least once and in order per quiz."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.cli.serve import _database_url, _migrate, _redact
    from service.db import make_engine
    from service.relay.brokers import BrokerUnavailable, broker_from_url
    from service.relay.relay import LeaseHeld, Relay

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        broker = broker_from_url(broker_url)
    except ValueError as exc:
        raise click.BadParameter(
            str(exc).removeprefix(f"--broker {broker_url!r}: "), param_hint="--broker"
        ) from None
    url = _database_url(database_url)
    _migrate(url)
    engine = make_engine(url, pool_size=1)
    worker = Relay(
        engine,
        broker,
        batch_size=batch_size,
        poll_interval=poll_interval,
        retention=timedelta(hours=retention_hours),
    )
    try:
        if once:
            try:
                sent = worker.drain()
            except BrokerUnavailable as exc:
                raise click.ClickException(f"--broker: {exc}") from None
            except LeaseHeld as exc:
                raise click.ClickException(
                    f"another relay ({exc}) holds the outbox lease of {_redact(url)}: "
                    "SQLite runs one relay at a time"
                ) from None
            click.echo(f"relay: {sent} event(s) sent to {broker_url}, {worker.stats.pruned} pruned")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        click.echo(f"relay: {_redact(url)} -> {broker_url} (Ctrl-C to stop)")
        stats = worker.run(stop)
        click.echo(
            f"relay: stopped; {stats.published} sent, {stats.unacked} unacknowledged send(s), "
            f"{stats.broker_errors} broker error(s), {stats.pruned} pruned"
        )
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database {_redact(url)}: {getattr(exc, 'orig', exc)}") from None
    finally:
        engine.dispose()
