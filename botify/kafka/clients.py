"""Client configs: who a client is (``client.id``), how producers and consumers start, and
``produce`` with room to wait for."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping

from confluent_kafka import (
    Consumer,
    KafkaError,
    Message,
    Producer,
)

from botify.settings import KafkaSettings

# The services that build Kafka clients: the second half of each client's ``client.id``.
API = "api"
STREAM = "stream"
TRAINER = "trainer"
EXPORT = "export"
CLI = "cli"
# Admin calls made on no service's behalf (the default of ``botify.kafka.admin``'s).
ADMIN = "admin"


# Record headers as librdkafka takes and reports them.
Headers = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None]


def client_id(settings: KafkaSettings, service: str) -> str:
    """The ``client.id`` of the clients ``service`` builds, e.g. ``botify-api``."""
    return f"{settings.client_id_prefix}-{service}"


def producer_config(
    settings: KafkaSettings, service: str, acked: bool = False
) -> dict[str, object]:
    """The config of a producer of ``service``; ``acked``: every delivery is reported (the
    API awaits them), else only failures."""
    return {
        **settings.client_config(),
        # Idempotence implies acks=all; said explicitly because durability depends on it.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "client.id": client_id(settings, service),
        # Without acked, reports only for failures: a Python callback per delivered event
        # costs the API more CPU than the rest of the publish path.
        "delivery.report.only.error": not acked,
    }


def consumer_config(settings: KafkaSettings, group: str, service: str) -> dict[str, object]:
    """The config of a consumer of ``service`` in ``group``: from the earliest offset, and
    commits only when its owner says so."""
    return {
        **settings.client_config(),
        "client.id": client_id(settings, service),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": settings.session_timeout_ms,
    }


def build_consumer(
    settings: KafkaSettings,
    service: str,
    group: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Consumer:
    """A consumer of ``service`` (``consumer_config`` plus ``overrides``). ``group`` None:
    a reader that ``assign()``s its partitions and never joins a group (librdkafka wants a
    group id all the same: a fresh one, so no group's offsets are touched)."""
    if group is None:
        group = f"{client_id(settings, service)}-{uuid.uuid4().hex[:12]}"
    return Consumer(consumer_config(settings, group, service) | dict(overrides or {}))


def produce_with_room(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
    on_delivery: Callable[[KafkaError | None, Message], None],
    retries: int,
    wait_s: float,
) -> bool:
    """``produce``, retried while the local queue is full, each retry after serving
    delivery reports for up to ``wait_s`` × attempt (``retries=0``: never waits, for an event
    loop). False when the queue stayed full."""
    for attempt in range(retries + 1):
        try:
            producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
            return True
        except BufferError:
            if attempt < retries:
                producer.poll(wait_s * (attempt + 1))
    return False


def is_fatal(err: KafkaError) -> bool:
    """Whether ``err`` leaves the producer unusable (fenced, say): it must be replaced."""
    # produce() on a producer already failed says _FATAL without the fatal flag.
    return bool(err.fatal()) or err.code() == KafkaError._FATAL
