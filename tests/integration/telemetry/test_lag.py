"""Consumer lag read from a real broker (Tansu)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer

from botify.kafka import ConsumerLagReader, create_topics
from botify.settings import KafkaSettings


def test_a_groups_lag_is_what_it_has_not_committed(broker_url: str, unique_topic: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker_url)
    create_topics(kafka, {unique_topic: 1})
    producer = Producer({"bootstrap.servers": broker_url})
    for i in range(10):  # one record per batch: Tansu's end offset is then exact
        producer.produce(unique_topic, value=str(i).encode())
        producer.flush(10)
    reader = ConsumerLagReader(kafka)
    [before] = reader.read("lag-test", [unique_topic])
    assert (before.end, before.committed, before.lag) == (10, None, 10)
    consumer = Consumer(
        {
            "bootstrap.servers": broker_url,
            "group.id": "lag-test",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    try:
        consumer.subscribe([unique_topic])
        taken, deadline = 0, time.monotonic() + 30
        while taken < 4 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                taken += 1
                consumer.commit(msg, asynchronous=False)
    finally:
        consumer.close()
    [after] = reader.read("lag-test", [unique_topic])
    assert (after.committed, after.lag) == (4, 6)
    assert reader.read("lag-test", ["no.such.topic"]) == []
