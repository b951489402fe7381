"""Helpers for the relay tests: a stream reader independent of the code under test, unique
streams on the shared NATS server, a NATS server of a test's own, and bulk events."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from service.events import emit
from service.models import OutboxEvent

SHARED_NATS = "nats://127.0.0.1:4222"
# Debian installs it to /usr/sbin (scripts/system-deps.sh), which a non-root PATH may lack
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unique_stream() -> tuple[str, str]:
    """A stream name and subject prefix no other test (or session) uses."""
    tag = secrets.token_hex(4)
    return f"QBANK_TEST_{tag.upper()}", f"test{tag}.events"


def broker_url(server: str, stream: str, prefix: str) -> str:
    return f"{server}?stream={stream}&subject={prefix}"


async def _read(server: str, stream: str) -> list[dict]:
    import nats

    nc = await nats.connect(servers=[server], connect_timeout=5)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append(json.loads(msg.data))
        return out
    finally:
        await nc.close()


def _in_thread(coroutine):
    """``asyncio.run`` in a thread of its own: callers may run a loop already (Playwright's)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def read_stream(server: str, stream: str) -> list[dict]:
    """Every message of ``stream`` in stream order, as decoded JSON."""
    return _in_thread(_read(server, stream))


async def _delete(server: str, stream: str) -> None:
    import nats
    import nats.js.errors

    nc = await nats.connect(servers=[server], connect_timeout=5)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


def delete_stream(server: str, stream: str) -> None:
    _in_thread(_delete(server, stream))


def emit_events(session_factory, n_quizzes: int, n_per_quiz: int, tenant: str, tag: str = "q") -> None:
    """``n_quizzes x n_per_quiz`` question_served events, quizzes interleaved, one commit per round."""
    for position in range(n_per_quiz):
        with session_factory() as session:
            for quiz in range(n_quizzes):
                quiz_id = f"{tag}-{quiz}"
                emit(
                    session,
                    tenant,
                    "question_served",
                    "quiz",
                    quiz_id,
                    {"quiz_id": quiz_id, "position": position, "question_id": 1},
                )
            session.commit()


def outbox_ids(session_factory) -> list[str]:
    with session_factory() as session:
        return list(session.scalars(select(OutboxEvent.event_id).order_by(OutboxEvent.id)))


def assert_in_order_per_quiz(messages: list[dict]) -> None:
    """Each quiz's first copies of its events arrive in position order (duplicates aside)."""
    seen, last = set(), {}
    for message in messages:
        if message["event_id"] in seen:
            continue
        seen.add(message["event_id"])
        key = message["aggregate_id"]
        assert message["position"] > last.get(key, -1), (key, message["position"], last.get(key))
        last[key] = message["position"]


@contextmanager
def own_nats_server(store: Path):
    """A JetStream-enabled nats-server of this test on a free port; yields a controller."""
    server = NatsProcess(store, free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


class NatsProcess:
    def __init__(self, store: Path, port: int):
        self.store, self.port = store, port
        self.url = f"nats://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [NATS_SERVER, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen on {self.port}")

    def freeze(self, seconds: float) -> None:
        """SIGSTOP for ``seconds``, then SIGCONT: what the relay sent meanwhile is stored after
        its acknowledgement timed out (a lost ack)."""
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None
