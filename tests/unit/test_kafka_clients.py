"""Every Kafka client botify builds names its service in client.id, as librdkafka reports."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from botify.errors import BackendUnavailableError
from botify.example_log import ExampleConsumer
from botify.kafka import (
    API,
    CLI,
    EXPORT,
    STREAM,
    TRAINER,
    ConsumerLagReader,
    DeliveringProducer,
    ListenPublisher,
    admin,
    broker_reachable,
    build_consumer,
    clients,
    create_topics,
    delivering,
    producer_config,
    publisher,
    topic_identity,
)
from botify.model_store import ModelAnnouncer
from botify.settings import KafkaSettings
from botify.telemetry.lag import ConsumerLagMonitor

SERVICES = (API, STREAM, TRAINER, EXPORT, CLI)


def nowhere(**changes: Any) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers="127.0.0.1:1", flush_timeout_s=0.1, **changes)


def reported_client_id(poll: Callable[[float], object], stats: list[str]) -> str:
    """The client_id in the client's first statistics report (bounded wait)."""
    deadline = time.monotonic() + 10
    while not stats and time.monotonic() < deadline:
        poll(0.05)
    assert stats, "no statistics within 10 s"
    return str(json.loads(stats[0])["client_id"])


@pytest.mark.parametrize("service", SERVICES)
def test_a_producer_reports_its_service_in_client_id(service: str) -> None:
    stats: list[str] = []
    config = producer_config(nowhere(client_id_prefix="shop"), service)
    producer = Producer(config | {"statistics.interval.ms": 50, "stats_cb": stats.append})
    try:
        assert reported_client_id(producer.poll, stats) == f"shop-{service}"
    finally:
        producer.close()


@pytest.mark.parametrize("service", SERVICES)
def test_a_consumer_reports_its_service_in_client_id(service: str) -> None:
    stats: list[str] = []
    overrides = {"statistics.interval.ms": 50, "stats_cb": stats.append}
    consumer = build_consumer(nowhere(), service, overrides=overrides)
    try:
        assert reported_client_id(consumer.poll, stats) == f"botify-{service}"
    finally:
        consumer.close()


def test_each_client_is_built_for_the_service_that_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    ids: list[object] = []

    class RecordingProducer(Producer):  # type: ignore[misc]
        def __init__(self, config: dict[str, object]) -> None:
            ids.append(config["client.id"])
            super().__init__(config)

    class RecordingConsumer(Consumer):  # type: ignore[misc]
        def __init__(self, config: dict[str, object]) -> None:
            ids.append(config["client.id"])
            super().__init__(config)

    monkeypatch.setattr(publisher, "Producer", RecordingProducer)
    monkeypatch.setattr(delivering, "Producer", RecordingProducer)
    monkeypatch.setattr(clients, "Consumer", RecordingConsumer)
    settings = nowhere()
    ListenPublisher(settings, API).close()
    DeliveringProducer(settings, STREAM).close()
    ModelAnnouncer(settings, "botify.models.v1", TRAINER).close()
    ExampleConsumer(settings, "trainers").close()
    build_consumer(settings, EXPORT).close()
    assert ids == [
        "botify-api",
        "botify-stream",
        "botify-trainer",
        "botify-trainer",
        "botify-export",
    ]


def test_admin_clients_name_their_service_with_the_configured_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids: list[object] = []

    class RecordingAdmin(admin.AdminClient):  # type: ignore[misc]
        def __init__(self, config: dict[str, object]) -> None:
            ids.append(config["client.id"])
            super().__init__(config)

    monkeypatch.setattr(admin, "AdminClient", RecordingAdmin)
    settings = nowhere(client_id_prefix="shop")
    assert not broker_reachable(settings, 0.05)
    assert not broker_reachable(settings, 0.05, service=CLI)
    with pytest.raises(BackendUnavailableError):
        create_topics(settings, {"t": 1}, timeout=0.05, service=TRAINER)
    with pytest.raises(BackendUnavailableError):
        topic_identity(settings, "t", timeout=0.05, service=STREAM)
    ConsumerLagReader(settings, service="stream-lag")
    monitor = ConsumerLagMonitor.for_group(
        settings, "g", ["t"], CollectorRegistry(), 1.0, service=TRAINER
    )
    # Its (unstarted) thread refers back to it: only the collector frees its admin client
    # (which has no close()), else retrying the closed port until the process exits.
    del monitor
    gc.collect()
    assert ids == [
        "shop-admin",
        "shop-cli",
        "shop-trainer",
        "shop-stream",
        "shop-stream-lag",
        "shop-trainer-lag",
    ]
