"""The relay loop: claim a batch, publish it, mark what the broker acknowledged, repeat.

At least once: an event is marked sent only after its acknowledgement, so a crash (even
``kill -9``) between the two only re-sends it. A broker outage makes the relay back off
(doubling from ``backoff_initial`` to ``backoff_max`` seconds) and reconnect; the service keeps
writing to the outbox meanwhile, and the backlog drains once the broker is back. Sent events
older than ``retention`` are pruned every ``prune_every`` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from service.relay.brokers import Broker, BrokerUnavailable
from service.relay.outbox import acquire_lease, claim_batch, mark_sent, prune_sent, read_batch, release_lease

log = logging.getLogger("qbank.relay")


def _local_process_gone(holder: str) -> bool:
    """A lease holder ``host:pid:...`` on this host whose process no longer runs (a relay killed
    with -9 cannot release its lease; a new one on the same host need not wait for it to expire)."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseHeld(Exception):
    """Another relay holds the SQLite lease."""


@dataclass
class RelayStats:
    published: int = 0  # acknowledged and marked sent
    unacked: int = 0  # sends without an acknowledgement (possible duplicates)
    duplicates: int = 0  # re-sends the broker recognised and dropped
    batches: int = 0
    broker_errors: int = 0
    pruned: int = 0


class Relay:
    """Ships the outbox of the database behind ``engine`` to ``broker``.

    Parameters
    ----------
    batch_size : int
        Events claimed per batch.
    poll_interval : float
        Seconds to wait when the outbox is empty.
    retention : timedelta
        Sent events older than this are deleted.
    lease_ttl : float
        SQLite only: seconds a relay's lease lasts without renewal (renewed every batch).
    """

    def __init__(
        self,
        engine: Engine,
        broker: Broker,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.2,
        retention: timedelta = timedelta(days=7),
        prune_every: float = 60.0,
        lease_ttl: float = 30.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        holder: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.engine = engine
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.prune_every = prune_every
        self.lease_ttl = timedelta(seconds=lease_ttl)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.single = engine.dialect.name != "postgresql"
        self.stats = RelayStats()
        self._connected = False
        self._last_prune = float("-inf")

    # ---------------------------------------------------------------- one batch
    def _ensure_broker(self) -> None:
        if not self._connected:
            self.broker.connect()
            self._connected = True

    def _publish(self, batch) -> list[int]:
        result = self.broker.publish(batch)
        self.stats.unacked += result.unacked
        self.stats.duplicates += result.duplicates
        if result.error:
            self.stats.broker_errors += 1
            self._connected = False  # reconnect before the next try
            log.warning("relay: %d of %d acknowledged: %s", len(result.acked), len(batch), result.error)
        return result.acked

    def run_batch(self) -> tuple[int, bool]:
        """Ship one batch; returns (events marked sent, whether the broker failed).

        Raises
        ------
        BrokerUnavailable
            When the broker cannot be reached (nothing was claimed for long).
        LeaseHeld
            SQLite: another relay holds the lease.
        """
        self._ensure_broker()
        if self.single:
            with self.engine.begin() as connection:
                holder = acquire_lease(connection, self.holder, self.lease_ttl, _local_process_gone)
                if holder is not None:
                    raise LeaseHeld(holder)
                batch = read_batch(connection, self.batch_size)
            acked = self._publish(batch) if batch else []
            with self.engine.begin() as connection:
                marked = mark_sent(connection, acked)
        else:
            with self.engine.begin() as connection:
                batch = claim_batch(connection, self.batch_size)
                acked = self._publish(batch) if batch else []
                marked = mark_sent(connection, acked)
        self.stats.batches += 1
        self.stats.published += marked
        return marked, len(acked) < len(batch)

    def prune(self) -> int:
        with self.engine.begin() as connection:
            pruned = prune_sent(connection, self.retention)
        self.stats.pruned += pruned
        self._last_prune = time.monotonic()
        return pruned

    # ---------------------------------------------------------------- loops
    def drain(self) -> int:
        """Ship everything unsent now, then prune (``qbank relay --once``); the first broker
        failure raises :class:`BrokerUnavailable`."""
        total = 0
        try:
            while True:
                marked, failed = self.run_batch()
                total += marked
                if failed:
                    raise BrokerUnavailable(f"{self.broker.url}: the broker stopped acknowledging")
                if marked < self.batch_size:
                    break
            self.prune()
        finally:
            self.close()
        return total

    def run(self, stop: threading.Event | None = None) -> RelayStats:
        """Ship until ``stop`` is set, backing off while the broker is down or the lease held."""
        stop = stop or threading.Event()
        backoff = self.backoff_initial
        try:
            while not stop.is_set():
                try:
                    marked, failed = self.run_batch()
                except BrokerUnavailable as exc:
                    self.stats.broker_errors += 1
                    self._connected = False
                    log.warning("relay: broker unavailable (%s); retrying in %.1f s", exc, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
                except LeaseHeld as exc:
                    log.info("relay: lease held by %s; waiting", exc)
                    stop.wait(self.lease_ttl.total_seconds() / 3)
                    continue
                except OperationalError as exc:  # the database went away for a moment
                    log.warning("relay: database error (%s); retrying in %.1f s", exc.orig, backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
                if failed:
                    stop.wait(backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                    continue
                backoff = self.backoff_initial
                if time.monotonic() - self._last_prune > self.prune_every:
                    self.prune()
                if marked < self.batch_size:
                    stop.wait(self.poll_interval)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        if self.single:
            try:
                with self.engine.begin() as connection:
                    release_lease(connection, self.holder)
            except OperationalError:
                pass  # the lease expires on its own
        self.broker.close()
        self._connected = False
