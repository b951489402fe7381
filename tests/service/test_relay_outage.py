"""A broker outage: a NATS server of this test's own first stalls (SIGSTOP: acknowledgements
time out, the messages are stored all the same), then is killed mid-stream and restarted on the
same store; the service keeps serving, the outbox grows, and every event arrives afterwards."""

from __future__ import annotations

import threading
import time

import pytest

from service.db import make_engine
from service.events import emit
from service.relay.brokers import NatsBroker
from service.relay.outbox import outbox_lag
from service.relay.relay import Relay
from tests.service.relay_support import (
    assert_in_order_per_quiz,
    broker_url,
    outbox_ids,
    own_nats_server,
    read_stream,
)


def _writer(session_factory, tenant, stop: threading.Event, counter: list) -> None:
    """Events written steadily, as the service writes them, until stopped."""
    position = 0
    while not stop.is_set():
        with session_factory() as session:
            for quiz in range(5):
                emit(session, tenant, "question_served", "quiz", f"w-{quiz}", {"position": position})
            session.commit()
        counter[0] += 5
        position += 1
        time.sleep(0.005)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_broker_outage_loses_nothing_and_the_service_keeps_serving(
    api, loaded_bank, take_quiz, session_factory, db, tenant, tmp_path
):
    engine = make_engine(db, pool_size=1)
    with own_nats_server(tmp_path / "jetstream") as nats_server:
        url = broker_url(nats_server.url, "QBANK_EVENTS", "events.qbank")
        relay = Relay(
            engine,
            NatsBroker(url, timeout=1.0),
            batch_size=100,
            poll_interval=0.02,
            backoff_initial=0.05,
            backoff_max=0.5,
        )
        stop_relay, stop_writer, written = threading.Event(), threading.Event(), [0]
        relay_thread = threading.Thread(target=relay.run, args=(stop_relay,))
        writer = threading.Thread(target=_writer, args=(session_factory, tenant, stop_writer, written))
        relay_thread.start()
        writer.start()
        try:
            deadline = time.monotonic() + 30
            while relay.stats.published < 300 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert relay.stats.published >= 300
            nats_server.freeze(2.5)  # a stall longer than the relay's 1 s ack timeout
            assert relay.stats.unacked > 0
            deadline = time.monotonic() + 30
            while relay.stats.published < 600 and time.monotonic() < deadline:
                time.sleep(0.01)
            unacked_in_stall = relay.stats.unacked
            nats_server.kill()  # mid-stream: the relay is publishing and the writer writing
            sent_at_outage = relay.stats.published

            # the service keeps serving while the broker is down, and the outbox grows
            r = api.post("/v1/quizzes", json={"filters": {"num_questions": 3}})
            assert r.status_code == 201, r.text
            answers = take_quiz(api, r.json()["quiz_id"], lambda item: loaded_bank.key[item["question_id"]])
            assert len(answers) == 3
            deadline = time.monotonic() + 20  # the relay keeps retrying, backing off
            while relay.stats.broker_errors < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert relay.stats.broker_errors >= 4
            with engine.connect() as connection:
                backlog_down = outbox_lag(connection).backlog
            assert backlog_down > 50

            nats_server.start()  # same port, same store
            stop_writer.set()
            writer.join(timeout=30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    if outbox_lag(connection).backlog == 0:
                        break
                time.sleep(0.05)
        finally:
            stop_writer.set()
            stop_relay.set()
            writer.join(timeout=30)
            relay_thread.join(timeout=30)
        messages = read_stream(nats_server.url, "QBANK_EVENTS")
    engine.dispose()

    expected = outbox_ids(session_factory)
    ids = [m["event_id"] for m in messages]
    lost = set(expected) - set(ids)
    duplicates = len(ids) - len(set(ids))
    print(
        f"\noutage: {unacked_in_stall} sends without ack in a 2.5 s stall; {len(expected)} events ({written[0]} by the writer), {sent_at_outage} sent before the "
        f"kill, backlog {backlog_down} while down, {relay.stats.broker_errors} broker errors, "
        f"{relay.stats.unacked} sends without ack, {len(ids)} on the stream: {len(lost)} lost, "
        f"{duplicates} duplicates, {relay.stats.duplicates} re-sends dropped by JetStream"
    )
    assert lost == set()
    assert duplicates <= relay.stats.unacked  # a duplicate only where an acknowledgement was lost
    assert_in_order_per_quiz([m for m in messages if "position" in m and m["aggregate_id"].startswith("w-")])
