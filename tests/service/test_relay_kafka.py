"""The Kafka adapter with the real confluent-kafka client but no Kafka broker (none runs on this
machine): the records it produces (topic, key = quiz id, JSON envelope), and that without an
acknowledgement nothing counts as sent. Delivery to a live cluster is not tested here."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from service.relay.brokers import BrokerUnavailable, KafkaBroker, broker_from_url
from service.relay.envelope import OutboxMessage
from tests.service.relay_support import free_port


def _message(row_id: int, quiz: str, position: int) -> OutboxMessage:
    return OutboxMessage(
        id=row_id,
        event_id=f"00000000-0000-4000-8000-{row_id:012d}",
        tenant_id="t1",
        event_type="answer_submitted",
        aggregate_type="quiz",
        aggregate_id=quiz,
        payload={"quiz_id": quiz, "position": position, "is_correct": True, "theta_after": 0.25},
        created_at=datetime(2026, 12, 4, 17, 0, 0, 123456, tzinfo=UTC),
    )


def test_kafka_record_has_the_seed_topic_the_quiz_key_and_the_envelope():
    broker = broker_from_url("kafka://127.0.0.1:9092,127.0.0.2:9092")
    assert (
        isinstance(broker, KafkaBroker)
        and broker.config["bootstrap.servers"] == "127.0.0.1:9092,127.0.0.2:9092"
    )
    record = broker.record(_message(7, "quiz-a", 3))
    assert record["topic"] == "events.qbank"
    assert record["key"] == b"quiz-a"  # one partition per quiz: its events stay in order
    assert json.loads(record["value"]) == {
        "event_id": "00000000-0000-4000-8000-000000000007",
        "event_type": "answer_submitted",
        "timestamp": "2026-12-04T17:00:00.123456+00:00",
        "tenant_id": "t1",
        "aggregate_type": "quiz",
        "aggregate_id": "quiz-a",
        "quiz_id": "quiz-a",
        "position": 3,
        "is_correct": True,
        "theta_after": 0.25,
    }
    assert dict(record["headers"])["event_id"] == b"00000000-0000-4000-8000-000000000007"
    assert broker_from_url("kafka://k:9092?topic=other").record(_message(1, "q", 0))["topic"] == "other"
    assert broker.config["enable.idempotence"] is True and broker.config["acks"] == "all"


def test_kafka_without_a_broker_is_unavailable_and_acknowledges_nothing():
    url = f"kafka://127.0.0.1:{free_port()}"
    broker = KafkaBroker(url, timeout=1.0)
    with pytest.raises(BrokerUnavailable, match=r"Kafka 127\.0\.0\.1"):
        broker.connect()
    # publishing through a producer that never reaches a broker: librdkafka times each message
    # out, and the relay would mark none of them sent
    producing = KafkaBroker(url, timeout=1.0)
    from confluent_kafka import Producer

    producing._producer = Producer(producing.config)
    result = producing.publish([_message(1, "q1", 0), _message(2, "q1", 1), _message(3, "q2", 0)])
    assert result.acked == [] and result.unacked == 2 and "Kafka 127.0.0.1" in result.error


def test_kafka_url_errors_name_the_option():
    with pytest.raises(ValueError, match="--broker 'kafka://': expected kafka://host:port"):
        KafkaBroker("kafka://")
