"""Admin calls: topics botify needs, a topic's identity, reachability, consumer-group lag."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)

# Exported by confluent_kafka.admin, though its stubs do not say so.
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from botify.errors import BackendUnavailableError
from botify.kafka.clients import ADMIN, client_id
from botify.settings import KafkaSettings


def _admin(settings: KafkaSettings, service: str) -> AdminClient:
    """An admin client of ``service``, named like its other clients (``client_id``)."""
    config: dict[str, str | int | float | bool] = {**settings.client_config()}
    config["client.id"] = client_id(settings, service)
    return AdminClient(config)


def ensure_topics(settings: KafkaSettings, timeout: float = 15.0, *, service: str = ADMIN) -> None:
    """Create the listens topic, its dead-letter topic and the training examples topic if
    they do not exist."""
    wanted = (settings.listens_topic, settings.dlq_topic, settings.examples_topic)
    create_topics(settings, dict.fromkeys(wanted, settings.partitions), timeout, service=service)


def create_topics(
    settings: KafkaSettings,
    partitions: Mapping[str, int],
    timeout: float = 15.0,
    *,
    service: str = ADMIN,
) -> None:
    """Create each topic of ``partitions`` (name -> partition count) that does not exist;
    one created meanwhile by another process is fine."""
    admin = _admin(settings, service)
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BackendUnavailableError(f"broker {settings.bootstrap_servers}: {exc}") from None
    config = {
        name: str(value)
        for name, value in (
            ("min.insync.replicas", settings.min_insync_replicas),
            ("retention.ms", settings.retention_ms),
            ("retention.bytes", settings.retention_bytes),
        )
        if value is not None
    }
    new = [
        NewTopic(t, num_partitions=n, replication_factor=settings.replication_factor, config=config)
        for t, n in partitions.items()
        if t not in existing
    ]
    if not new:
        return
    for topic, future in admin.create_topics(new, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise BackendUnavailableError(f"cannot create topic {topic}: {exc}") from None
        except concurrent.futures.TimeoutError:
            raise BackendUnavailableError(f"cannot create topic {topic}: timed out") from None


# What a broker answers for a topic id it does not have (Kafka's Uuid.ZERO_UUID).
_NO_TOPIC_ID = {None, "", "AAAAAAAAAAAAAAAAAAAAAA"}


def topic_identity(
    settings: KafkaSettings, topic: str, timeout: float = 10.0, *, service: str = ADMIN
) -> str:
    """The identity of this lifetime of ``topic``: the cluster id and the topic id, which a
    broker restarted without its data does not keep (Tansu keeps its cluster id but makes a
    new topic id; Kafka makes both new). Offsets compare only within one identity.
    ``BackendUnavailableError`` when the broker does not say."""
    admin = _admin(settings, service)
    try:
        cluster = admin.describe_cluster(request_timeout=timeout).result(timeout)
        described = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
        topic_id = described[topic].result(timeout).topic_id
    except (KafkaException, concurrent.futures.TimeoutError) as exc:
        raise BackendUnavailableError(f"cannot describe topic {topic}: {exc!r}") from None
    tid = None if topic_id is None else str(topic_id)
    if cluster.cluster_id is None and tid in _NO_TOPIC_ID:
        raise BackendUnavailableError(f"the broker gives no identity for topic {topic}")
    return f"{cluster.cluster_id or ''}/{'' if tid in _NO_TOPIC_ID else tid}"


def broker_reachable(
    settings: KafkaSettings, timeout: float = 2.0, *, service: str = ADMIN
) -> bool:
    try:
        _admin(settings, service).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """How far a consumer group's committed offset is behind one partition's end."""

    topic: str
    partition: int
    end: int
    committed: int | None  # None: the group has committed nothing there yet

    @property
    def lag(self) -> int:
        # Tansu reports a partition's end as its last record batch's base offset + 1, so a
        # group may look ahead of the end; that is no lag, not a negative one.
        return max(0, self.end - (self.committed or 0))


class ConsumerLagReader:
    """Reads a consumer group's lag per partition with one admin client of ``service``,
    kept open."""

    def __init__(self, settings: KafkaSettings, service: str = "lag") -> None:
        self._admin = _admin(settings, service)

    def read(self, group: str, topics: Iterable[str], timeout: float = 5.0) -> list[PartitionLag]:
        """Every partition of ``topics``: its end and ``group``'s committed offset.
        ``BackendUnavailableError`` when the broker does not answer."""
        try:
            meta = self._admin.list_topics(timeout=timeout).topics
            parts = [
                TopicPartition(t, p)
                for t in topics
                if t in meta
                for p in sorted(meta[t].partitions)
            ]
            if not parts:
                return []
            ends = self._admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in parts},  # type: ignore[no-untyped-call]
                request_timeout=timeout,
            )
            end = {(tp.topic, tp.partition): f.result(timeout).offset for tp, f in ends.items()}
            request = [ConsumerGroupTopicPartitions(group, parts)]
            done = self._admin.list_consumer_group_offsets(request, request_timeout=timeout)
            committed = {
                (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
                for f in done.values()
                for tp in f.result(timeout).topic_partitions
            }
        except (KafkaException, concurrent.futures.TimeoutError) as exc:
            raise BackendUnavailableError(f"cannot read the lag of {group}: {exc!r}") from None
        return [
            PartitionLag(tp.topic, tp.partition, end[key], committed.get(key))
            for tp in parts
            for key in [(tp.topic, tp.partition)]
        ]
