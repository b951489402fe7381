"""Brokers behind one small interface: connect, publish a batch, close.

``publish`` sends a batch and returns what the broker acknowledged. Within one ordering key (a
quiz) events go out one after another, the next only after the broker acknowledged the one
before, so the acknowledged events of a key are always a prefix of that key's events in the
batch and a retry can never overtake an event already stored. Different keys go out
concurrently.

- :class:`NatsBroker`: NATS JetStream with the ``nats-py`` client. It ensures the stream
  (``QBANK_EVENTS`` over ``events.qbank.>``, file storage) and sets each message's
  ``Nats-Msg-Id`` to the event id, so the server itself drops a re-sent event within the
  stream's duplicate window (2 minutes by default); consumers drop older duplicates by id.
- :class:`KafkaBroker`: Apache Kafka with ``confluent-kafka`` (librdkafka): topic
  ``events.qbank``, key = the quiz id (one partition per quiz, so its events stay in order),
  idempotent producer with ``acks=all``. Written against the client's documented API; this
  repository's tests exercise it without a Kafka broker (records, keys, refusal when none answers).

Broker URLs: ``nats://host:4222[?stream=NAME&subject=PREFIX]``,
``kafka://host:9092[,host2:9092][?topic=NAME]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from service.relay.envelope import TOPIC, OutboxMessage, encode, subject

NATS_STREAM = "QBANK_EVENTS"


class BrokerUnavailable(Exception):
    """The broker cannot be reached or refused the connection; the relay retries later."""


@dataclass
class PublishResult:
    """What one batch achieved: acknowledged event row ids, sends without an acknowledgement
    (each may or may not have been stored: a possible duplicate later), and the first error."""

    acked: list[int] = field(default_factory=list)
    unacked: int = 0
    duplicates: int = 0  # the broker said it already had the event (JetStream dedup)
    error: str | None = None


def by_key(messages: Sequence[OutboxMessage]) -> dict[str, list[OutboxMessage]]:
    groups: dict[str, list[OutboxMessage]] = defaultdict(list)
    for message in messages:
        groups[message.ordering_key].append(message)
    return groups


class Broker:
    """The interface the relay needs."""

    url: str

    def connect(self) -> None:
        """Connect (again); raises :class:`BrokerUnavailable`."""
        raise NotImplementedError

    def publish(self, messages: Sequence[OutboxMessage]) -> PublishResult:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


class NatsBroker(Broker):
    """NATS JetStream; the async client runs on a private event loop in its own thread, so the
    relay stays plain synchronous code, callable from anywhere (even a thread running a loop)."""

    def __init__(self, url: str, *, timeout: float = 5.0):
        parts = urlsplit(url)
        if not parts.hostname:
            raise ValueError(f"--broker {url!r}: expected nats://host:port")
        query = _query(url)
        self.url = url
        self.server = f"nats://{parts.hostname}:{parts.port or 4222}"
        self.stream = query.get("stream", NATS_STREAM)
        self.subject_prefix = query.get("subject", TOPIC)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-broker", daemon=True)
        self._thread.start()
        self._nc = None
        self._js = None

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def connect(self) -> None:
        import nats
        import nats.errors
        import nats.js.errors

        self._close_connection()

        async def _quiet(_exc):  # failures surface through publish; no log spam while down
            return None

        async def _connect():
            # One quick attempt (nats-py reads 0 attempts as "retry forever"); the relay's own
            # backoff decides when to try again.
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=[self.server],
                    connect_timeout=self.timeout,
                    allow_reconnect=False,
                    error_cb=_quiet,
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.05,
                ),
                timeout=3 * self.timeout,
            )
            js = nc.jetstream(timeout=self.timeout)
            try:
                await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(name=self.stream, subjects=[f"{self.subject_prefix}.>"], storage="file")
            return nc, js

        try:
            self._nc, self._js = self._run(_connect())
        except (TimeoutError, nats.errors.Error, OSError) as exc:
            raise BrokerUnavailable(f"NATS {self.server}: {type(exc).__name__}: {exc}") from None

    async def _publish_key(self, messages: list[OutboxMessage], result: PublishResult) -> None:
        import nats.errors

        for message in messages:
            try:
                ack = await self._js.publish(
                    subject(message, self.subject_prefix),
                    encode(message),
                    timeout=self.timeout,
                    headers={"Nats-Msg-Id": message.event_id},
                )
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                result.unacked += 1
                result.error = result.error or f"NATS {self.server}: {type(exc).__name__}: {exc}"
                return  # later events of this key wait for the next batch, in order
            result.acked.append(message.id)
            result.duplicates += int(bool(ack.duplicate))

    def publish(self, messages: Sequence[OutboxMessage]) -> PublishResult:
        if self._js is None or self._nc.is_closed:
            raise BrokerUnavailable(f"NATS {self.server}: not connected")
        result = PublishResult()

        async def _all():
            await asyncio.gather(*(self._publish_key(group, result) for group in by_key(messages).values()))

        self._run(_all())
        return result

    def _close_connection(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            # closing a broken connection must not mask the reason we close it
            with contextlib.suppress(Exception):
                self._run(self._nc.close())
        self._nc = self._js = None

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._close_connection()

        # the client's background tasks (flusher, reader) end with the loop, not after it
        async def _cancel_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(_cancel_rest())
        self._run(self._loop.shutdown_asyncgens())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class KafkaBroker(Broker):
    """Apache Kafka through confluent-kafka's ``Producer`` (documented API: ``produce`` with
    ``key``, ``value``, ``headers`` and ``on_delivery``; ``flush``; ``list_topics``)."""

    def __init__(self, url: str, *, timeout: float = 10.0, config: dict | None = None):
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"--broker {url!r}: expected kafka://host:port[,host:port]")
        self.url = url
        self.bootstrap = parts.netloc
        self.topic = _query(url).get("topic", TOPIC)
        self.timeout = timeout
        self.config = {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,  # retries neither duplicate nor reorder within a partition
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(timeout * 1000),
            **(config or {}),
        }
        self._producer = None

    def record(self, message: OutboxMessage) -> dict:
        """The arguments of ``Producer.produce`` for one event (key = the quiz id)."""
        return {
            "topic": self.topic,
            "key": message.ordering_key.encode("utf-8"),
            "value": encode(message),
            "headers": [("event_id", message.event_id.encode()), ("event_type", message.event_type.encode())],
        }

    def connect(self) -> None:
        from confluent_kafka import KafkaException, Producer

        self._producer = Producer(self.config)
        try:
            self._producer.list_topics(timeout=self.timeout)
        except KafkaException as exc:
            self._producer = None
            raise BrokerUnavailable(f"Kafka {self.bootstrap}: {exc}") from None

    def publish(self, messages: Sequence[OutboxMessage]) -> PublishResult:
        from confluent_kafka import KafkaException

        if self._producer is None:
            raise BrokerUnavailable(f"Kafka {self.bootstrap}: not connected")
        delivered: dict[int, str | None] = {}
        result = PublishResult()
        for message in messages:

            def _report(err, _msg, row_id=message.id):
                delivered[row_id] = None if err is None else str(err)

            try:
                self._producer.produce(**self.record(message), on_delivery=_report)
            except (KafkaException, BufferError) as exc:
                delivered[message.id] = str(exc)
            self._producer.poll(0)
        self._producer.flush(self.timeout)
        # keep each key's acknowledged prefix only, as the interface promises
        for group in by_key(messages).values():
            for message in group:
                error = delivered.get(message.id, "no delivery report")
                if error is not None:
                    result.unacked += 1
                    result.error = result.error or f"Kafka {self.bootstrap}: {error}"
                    break
                result.acked.append(message.id)
        result.acked.sort()
        return result

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
        self._producer = None


def broker_from_url(url: str) -> Broker:
    """The broker for ``nats://...`` or ``kafka://...``; ValueError naming --broker otherwise."""
    scheme = urlsplit(url).scheme
    if scheme == "nats":
        return NatsBroker(url)
    if scheme == "kafka":
        return KafkaBroker(url)
    raise ValueError(f"--broker {url!r}: unsupported scheme {scheme!r}; use nats:// or kafka://")
