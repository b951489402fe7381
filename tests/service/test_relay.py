"""The outbox relay against the real NATS JetStream server on 127.0.0.1:4222 (one stream per
test, deleted afterwards), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from qbank.cli.main import cli
from service.db import make_engine
from service.models import OutboxEvent, utcnow
from service.relay.brokers import NatsBroker
from service.relay.envelope import ENVELOPE_KEYS
from service.relay.outbox import acquire_lease, outbox_lag
from service.relay.relay import LeaseHeld, Relay
from tests.service.relay_support import (
    SHARED_NATS,
    assert_in_order_per_quiz,
    broker_url,
    delete_stream,
    emit_events,
    outbox_ids,
    read_stream,
    unique_stream,
)


@pytest.fixture
def stream():
    name, prefix = unique_stream()
    yield name, broker_url(SHARED_NATS, name, prefix)
    delete_stream(SHARED_NATS, name)


def _unsent(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )


def test_a_quizs_events_arrive_in_order_with_the_envelope(
    api, loaded_bank, take_quiz, session_factory, stream, db
):
    name, url = stream
    quizzes = []
    for user in ("ann", "bob"):
        r = api.post("/v1/quizzes", user=user, json={"filters": {"num_questions": 4}})
        assert r.status_code == 201, r.text
        quizzes.append(r.json()["quiz_id"])
        take_quiz(api, quizzes[-1], lambda item: loaded_bank.key[item["question_id"]], user=user)

    result = CliRunner().invoke(cli, ["relay", "--broker", url, "--once", "--database-url", db])
    assert result.exit_code == 0, result.output
    expected = outbox_ids(session_factory)
    assert f"{len(expected)} event(s) sent" in result.output

    messages = read_stream(SHARED_NATS, name)
    # every event once; quizzes go out concurrently, so only each quiz's own order is kept
    assert sorted(m["event_id"] for m in messages) == sorted(expected)
    assert _unsent(session_factory) == 0
    for quiz in quizzes:
        mine = [m for m in messages if m["aggregate_id"] == quiz]
        assert [m["event_type"] for m in mine] == (
            ["quiz_started"] + ["question_served", "answer_submitted"] * 4 + ["quiz_finished"]
        )
        assert [m["position"] for m in mine if m["event_type"] == "answer_submitted"] == [0, 1, 2, 3]
        assert all(set(ENVELOPE_KEYS) <= set(m) and m["quiz_id"] == quiz for m in mine)
        stamps = [m["timestamp"] for m in mine]
        assert stamps == sorted(stamps) and stamps[0].endswith("+00:00")
        assert all(m["tenant_id"] == api.default_tenant for m in mine)
    # a second run finds nothing to send
    again = CliRunner().invoke(cli, ["relay", "--broker", url, "--once", "--database-url", db])
    assert again.exit_code == 0 and "0 event(s) sent" in again.output
    assert len(read_stream(SHARED_NATS, name)) == len(expected)


def _relay_process(db: str, url: str, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "qbank.cli.main", "relay", "--broker", url, "--database-url", db]
    return subprocess.Popen(
        [*command, "--batch-size", str(batch_size), "--poll-interval", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_kill_9_of_the_relay_mid_batch_loses_nothing(session_factory, stream, db, tenant):
    name, url = stream
    emit_events(session_factory, n_quizzes=40, n_per_quiz=50, tenant=tenant)  # 2000 events
    expected = outbox_ids(session_factory)
    relay = _relay_process(db, url, batch_size=200)
    try:
        deadline = time.monotonic() + 60
        while _unsent(session_factory) == len(expected) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.02)
        relay.send_signal(signal.SIGKILL)
        relay.wait(timeout=10)
    finally:
        if relay.poll() is None:
            relay.kill()
    left = _unsent(session_factory)
    on_stream_at_kill = len(read_stream(SHARED_NATS, name))
    assert 0 < left < len(expected), "the kill came before the first or after the last batch"

    # a new relay (the dead one's SQLite lease is taken over) ships the rest
    result = CliRunner().invoke(cli, ["relay", "--broker", url, "--once", "--database-url", db])
    assert result.exit_code == 0, result.output
    messages = read_stream(SHARED_NATS, name)
    ids = [m["event_id"] for m in messages]
    assert set(ids) == set(expected)  # nothing lost
    assert len(ids) - len(set(ids)) <= 200  # at most the killed batch again (JetStream drops those)
    assert_in_order_per_quiz(messages)
    assert _unsent(session_factory) == 0
    print(
        f"kill -9: {len(expected) - left} marked, {on_stream_at_kill} on the stream at the kill, "
        f"{len(ids)} messages after the restart, {len(ids) - len(set(ids))} duplicates"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_three_relays_on_postgresql_share_the_outbox_without_twice_or_skip(
    session_factory, stream, db, tenant
):
    name, url = stream
    emit_events(session_factory, n_quizzes=30, n_per_quiz=60, tenant=tenant)  # 1800 events
    expected = outbox_ids(session_factory)
    engines = [make_engine(db, pool_size=1) for _ in range(3)]
    relays = [Relay(e, NatsBroker(url), batch_size=50, poll_interval=0.01) for e in engines]
    stop = threading.Event()
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in relays]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while _unsent(session_factory) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    for engine in engines:
        engine.dispose()
    messages = read_stream(SHARED_NATS, name)
    assert sorted(m["event_id"] for m in messages) == sorted(expected)
    # every relay got a share, and each event was acknowledged exactly once across them
    assert all(r.stats.published > 0 for r in relays), [r.stats for r in relays]
    assert sum(r.stats.published for r in relays) == len(expected)
    assert sum(r.stats.duplicates + r.stats.unacked for r in relays) == 0
    assert_in_order_per_quiz(messages)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_runs_one_relay_at_a_time(session_factory, stream, db, tenant):
    _, url = stream
    emit_events(session_factory, n_quizzes=2, n_per_quiz=3, tenant=tenant)
    engine = make_engine(db, pool_size=1)
    try:
        with engine.begin() as connection:
            assert acquire_lease(connection, "elsewhere:1:a", timedelta(seconds=30)) is None
        second = Relay(engine, NatsBroker(url), holder="here:2:b")
        with pytest.raises(LeaseHeld, match="elsewhere:1:a"):
            second.run_batch()
        result = CliRunner().invoke(cli, ["relay", "--broker", url, "--once", "--database-url", db])
        assert result.exit_code == 1 and "SQLite runs one relay at a time" in result.output
        with engine.begin() as connection:  # the holder's lease ran out
            assert acquire_lease(connection, "elsewhere:1:a", timedelta(seconds=-1)) is None
        assert second.run_batch() == (6, False)
        second.close()
    finally:
        engine.dispose()


def test_sent_events_are_pruned_after_the_retention_and_lag_is_reported(session_factory, stream, db, tenant):
    _, url = stream
    emit_events(session_factory, n_quizzes=3, n_per_quiz=2, tenant=tenant)
    engine = make_engine(db, pool_size=1)
    try:
        with engine.begin() as connection:
            lag = outbox_lag(connection, now=utcnow() + timedelta(seconds=90))
        assert lag.backlog == 6 and 89 < lag.oldest_unsent_age_s < 120
        relay = Relay(engine, NatsBroker(url), retention=timedelta(hours=1))
        assert relay.run_batch() == (6, False)
        with engine.begin() as connection:
            assert outbox_lag(connection).as_dict() == {
                "backlog": 0,
                "oldest_unsent_age_s": None,
                "oldest_unsent_at": None,
            }
            old = utcnow() - timedelta(hours=2)
            connection.execute(update(OutboxEvent).where(OutboxEvent.id <= 2).values(published_at=old))
        assert relay.prune() == 2
        relay.close()
    finally:
        engine.dispose()
    assert len(outbox_ids(session_factory)) == 4


def test_relay_cli_errors_name_the_option(db):
    runner = CliRunner()
    result = runner.invoke(cli, ["relay", "--broker", "amqp://x", "--once", "--database-url", db])
    assert result.exit_code == 2 and "--broker" in result.output and "nats:// or kafka://" in result.output
    closed = f"nats://127.0.0.1:{_closed_port()}"
    result = runner.invoke(cli, ["relay", "--broker", closed, "--once", "--database-url", db])
    assert result.exit_code == 1 and "Error: --broker: NATS" in result.output
    assert "Traceback" not in result.output


def _closed_port() -> int:
    from tests.service.relay_support import free_port

    return free_port()


def test_outbox_lag_on_health_and_the_admin_endpoint(api, session_factory, tenant):
    emit_events(session_factory, n_quizzes=2, n_per_quiz=2, tenant=tenant)
    health = api.client.get("/health").json()
    assert health["outbox"]["backlog"] == 4 and health["outbox"]["oldest_unsent_age_s"] >= 0
    r = api.get("/v1/admin/outbox", user="root", roles=("admin",))
    assert r.status_code == 200 and r.json()["backlog"] == 4
    assert datetime.fromisoformat(r.json()["oldest_unsent_at"]).utcoffset() == timedelta(0)
    assert api.get("/v1/admin/outbox", user="ann", roles=("student",)).status_code == 403
