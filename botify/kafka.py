"""The one place that builds Kafka clients (faust's own consumer aside).

``ListenPublisher`` wraps confluent-kafka's producer: ``publish`` never waits for the broker,
``publish_acked`` waits for its acknowledgement (with a deadline); a background thread serves
delivery callbacks, failures are counted, and a full local buffer is retried a bounded
number of times before ``BackendUnavailableError``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from botify.errors import BackendUnavailableError
from botify.events import ListenEvent, encode_listen_event
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)


def producer_config(settings: KafkaSettings, acked: bool = False) -> dict[str, object]:
    """The listens producer's config; ``acked``: every delivery is reported (the API awaits
    them), else only failures."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        # Idempotence implies acks=all; said explicitly because durability depends on it.
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "client.id": "botify-api",
        # Without acked, reports only for failures: a Python callback per delivered event
        # costs the API more CPU than the rest of the publish path.
        "delivery.report.only.error": not acked,
    }


def consumer_config(settings: KafkaSettings, group: str) -> dict[str, object]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": settings.session_timeout_ms,
    }


def ensure_topics(settings: KafkaSettings, timeout: float = 15.0) -> None:
    """Create the listens topic, its dead-letter topic and the training examples topic if
    they do not exist."""
    wanted = (settings.listens_topic, settings.dlq_topic, settings.examples_topic)
    create_topics(settings, dict.fromkeys(wanted, settings.partitions), timeout)


def create_topics(
    settings: KafkaSettings, partitions: Mapping[str, int], timeout: float = 15.0
) -> None:
    """Create each topic of ``partitions`` (name -> partition count) that does not exist;
    one created meanwhile by another process is fine."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BackendUnavailableError(f"broker {settings.bootstrap_servers}: {exc}") from None
    config = (
        {}
        if settings.min_insync_replicas is None
        else {"min.insync.replicas": str(settings.min_insync_replicas)}
    )
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


def broker_reachable(settings: KafkaSettings, timeout: float = 2.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=timeout)
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
    """Reads a consumer group's lag per partition with one admin client, kept open."""

    def __init__(self, settings: KafkaSettings, client_id: str = "botify-lag") -> None:
        self._admin = AdminClient(
            {"bootstrap.servers": settings.bootstrap_servers, "client.id": client_id}
        )

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
                {tp: OffsetSpec.latest() for tp in parts}, request_timeout=timeout
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


def _settle(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():  # the waiter may have timed out and gone
        future.set_result(err)


@dataclass
class PublisherStats:
    produced: int = 0
    failed: int = 0
    buffer_full: int = 0
    # Acked publishes whose acknowledgement did not come within their deadline.
    unacknowledged: int = 0


class ListenPublisher:
    """Publishes listen events keyed by user; never blocks the caller on the broker."""

    def __init__(
        self,
        settings: KafkaSettings,
        on_failure: Callable[[str], None] | None = None,
        poll_interval: float = 0.05,
        acked: bool = False,
    ) -> None:
        self._settings = settings
        # Built for the "acks" durability mode: the API awaits ``publish_acked``.
        self.acked = acked
        self._producer = Producer(producer_config(settings, acked))
        self._on_failure = on_failure
        self._poll_interval = poll_interval
        self.stats = PublisherStats()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(self._poll_interval)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:  # reported only when acked
            return
        self.stats.failed += 1
        logger.error("delivery to %s failed: %s", msg.topic(), err)
        if self._on_failure is not None:
            self._on_failure(str(err.name()))

    def publish(self, event: ListenEvent) -> None:
        self.publish_raw(self._settings.listens_topic, event.key, encode_listen_event(event))

    async def publish_acked(self, event: ListenEvent, timeout: float) -> None:
        """Publish and wait until the broker has the event (all in-sync replicas), at most
        ``timeout`` seconds; ``BackendUnavailableError`` if it refused it or did not answer
        in time (then the event may still arrive later)."""
        if not self.acked:
            raise RuntimeError("publish_acked needs a publisher built with acked=True")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            self._delivered(err, msg)
            loop.call_soon_threadsafe(_settle, done, err)

        self.publish_raw(
            self._settings.listens_topic, event.key, encode_listen_event(event), None, delivered
        )
        try:
            err = await asyncio.wait_for(done, timeout)
        except TimeoutError:
            self.stats.unacknowledged += 1
            raise BackendUnavailableError(
                f"the broker did not acknowledge the event within {timeout:g} s"
            ) from None
        if err is not None:
            raise BackendUnavailableError(f"the broker did not take the event: {err.name()}")

    def publish_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes]] | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
    ) -> None:
        for attempt in range(self._settings.produce_retries + 1):
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers or []),
                    on_delivery=on_delivery or self._delivered,
                )
                self.stats.produced += 1
                return
            except BufferError:
                self.stats.buffer_full += 1
                # The poll thread drains the queue; give it a moment, boundedly.
                time.sleep(0.005 * (attempt + 1))
        raise BackendUnavailableError("the event buffer is full: the broker is not keeping up")

    def pending(self) -> int:
        return len(self._producer)

    def flush(self, timeout: float | None = None) -> int:
        return int(
            self._producer.flush(self._settings.flush_timeout_s if timeout is None else timeout)
        )

    def close(self) -> None:
        left = self.flush()
        self._stop.set()
        self._poller.join(timeout=2)
        if left:
            logger.error("%d events were not delivered before shutdown", left)


class DeliveringProducer:
    """A producer for records that must be on the broker before the caller goes on (the
    stream's training examples and dead letters): ``send`` hands records over, ``flush``
    returns once every record sent is delivered, or raises ``BackendUnavailableError``.

    ``flush`` blocks its thread while records are in flight: one round of broker latency.
    """

    def __init__(
        self, settings: KafkaSettings, client_id: str, linger_ms: int | None = None
    ) -> None:
        """``linger_ms``: how long records wait to be batched (default: the settings')."""
        self._settings = settings
        config = producer_config(settings) | {"client.id": client_id}
        if linger_ms is not None:
            config["linger.ms"] = linger_ms
        self._producer = Producer(config)
        self._errors: list[KafkaError] = []

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._errors.append(err)

    def send(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Hand (key, value) records to librdkafka, which sends them in its own threads."""
        produce = self._producer.produce
        for key, value in records:
            for attempt in range(self._settings.produce_retries + 1):
                try:
                    produce(topic, value, key, on_delivery=self._delivered, headers=headers)
                    break
                except BufferError:  # the local queue is full: let it drain a little
                    self._producer.poll(0.01 * (attempt + 1))
            else:
                self._fail("the producer's buffer stays full")

    def send_batch(self, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """``send`` for records without headers, handed to librdkafka in one call (a third of
        the cost per record of ``produce``: the stream sends a training example per listen)."""
        messages = [{"key": key, "value": value} for key, value in records]
        queued = self._producer.produce_batch(topic, messages, on_delivery=self._delivered)
        if queued < len(messages):
            # The ones the local queue refused (marked so) go one by one, waiting for room.
            self.send(topic, [(m["key"], m["value"]) for m in messages if "_error" in m])

    def flush(self) -> None:
        """Wait until every record sent so far is delivered; on failure drop the rest and
        raise ``BackendUnavailableError``."""
        left = self._producer.flush(self._settings.flush_timeout_s)
        if left or self._errors:
            self._fail(f"{left} records undelivered, errors {self._errors[:3]}")

    def _fail(self, why: str) -> None:
        # Whatever is left would be sent again by the caller's retry: drop it here.
        self._producer.purge()
        self._producer.poll(0)
        self._errors = []
        raise BackendUnavailableError(f"delivery to the broker failed: {why}")

    def close(self) -> None:
        self._producer.flush(self._settings.flush_timeout_s)
