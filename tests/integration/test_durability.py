"""``ListenPublisher.publish_acked`` against a real broker: it returns once the event can be
read back, and fails within its deadline when no broker answers."""

from __future__ import annotations

import asyncio
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from botify.errors import BackendUnavailableError
from botify.kafka import ListenPublisher, ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import free_port
from tests.factories import listen


def read_all(kafka: KafkaSettings) -> int:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "acked"})
    try:
        topic = kafka.listens_topic
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        total = 0
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


async def test_an_acked_publish_returns_once_the_broker_has_the_event(
    broker_url: str, unique_topic: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic, partitions=2)
    ensure_topics(kafka)
    publisher = ListenPublisher(kafka, "test", acked=True)
    try:
        for user in range(20):
            await publisher.publish_acked(listen(user=user), timeout=10)
            # No flush: the acknowledgement alone says the broker has it.
            assert read_all(kafka) == user + 1
    finally:
        publisher.close()


async def test_an_acked_publish_fails_within_its_deadline_without_a_broker() -> None:
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}", flush_timeout_s=0.5)
    publisher = ListenPublisher(kafka, "test", acked=True)
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="acknowledge"):
            await publisher.publish_acked(listen(user=1), timeout=0.5)
        assert time.monotonic() - started < 2
        assert publisher.stats.unacknowledged == 1
    finally:
        publisher.close()
        await asyncio.sleep(0)
