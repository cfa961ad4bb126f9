"""The one place that builds Kafka clients (faust's own consumer aside).

Every client names its service in ``client.id`` (``client_id``: ``botify-api``,
``botify-stream``, ``botify-trainer``, ``botify-export``, ``botify-cli``), so a broker's logs,
quotas and metrics tell the services apart; ``KafkaSettings.client_id_prefix`` replaces
``botify`` (say, to tell two deployments apart on one cluster).

``ListenPublisher`` wraps confluent-kafka's producer: ``publish`` never waits for the broker,
``publish_acked`` waits for its acknowledgement (with a deadline); a background thread serves
delivery callbacks, counts failures, watches delivery and rebuilds a fenced or stuck
producer. A full local buffer raises ``BackendUnavailableError`` (at once for the API's
event loop, after a bounded wait for other callers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)

# Exported by confluent_kafka.admin, though its stubs do not say so.
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]

from botify.delivery import HEALTHY, DeliveryStatus, DeliveryTracker
from botify.errors import BackendUnavailableError
from botify.events import ListenEvent, encode_listen_event
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)


# The services that build Kafka clients: the second half of each client's ``client.id``.
API = "api"
STREAM = "stream"
TRAINER = "trainer"
EXPORT = "export"
CLI = "cli"


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


def _admin(settings: KafkaSettings, name: str | None = None) -> AdminClient:
    config: dict[str, str | int | float | bool] = {**settings.client_config()}
    if name is not None:
        config["client.id"] = name
    return AdminClient(config)


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
    admin = _admin(settings)
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


def topic_identity(settings: KafkaSettings, topic: str, timeout: float = 10.0) -> str:
    """The identity of this lifetime of ``topic``: the cluster id and the topic id, which a
    broker restarted without its data does not keep (Tansu keeps its cluster id but makes a
    new topic id; Kafka makes both new). Offsets compare only within one identity.
    ``BackendUnavailableError`` when the broker does not say."""
    admin = _admin(settings)
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


def broker_reachable(settings: KafkaSettings, timeout: float = 2.0) -> bool:
    try:
        _admin(settings).list_topics(timeout=timeout)
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
        self._admin = _admin(settings, client_id)

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


def _settle(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():  # the waiter may have timed out and gone
        future.set_result(err)


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


@dataclass
class PublisherStats:
    produced: int = 0
    failed: int = 0
    buffer_full: int = 0
    # Acked publishes whose acknowledgement did not come within their deadline.
    unacknowledged: int = 0
    # Events handed again to a rebuilt producer (the old one could not deliver them).
    carried_over: int = 0


# Delivery errors of an event that a rebuilt producer should send again: the old producer
# failed (fenced, unknown producer id) or we purged it to rebuild it.
_CARRY_CODES = frozenset({KafkaError._FATAL, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# An event is carried over to at most this many rebuilt producers, then counted as failed.
MAX_CARRIES = 3
# The failure label of events a rebuilt producer still held and never reported.
STUCK_IN_REBUILT = "_REBUILT"


class _Delivery:
    """An event's delivery callback: carries the event over to a rebuilt producer when its
    producer could not deliver it, else reports to ``then`` (an acked publish's waiter)."""

    __slots__ = ("carries", "publisher", "then")

    def __init__(
        self,
        publisher: ListenPublisher,
        then: Callable[[KafkaError | None, Message], None] | None,
        carries: int = 0,
    ) -> None:
        self.publisher = publisher
        self.then = then
        self.carries = carries

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.publisher._delivered(err, msg, self)


class ListenPublisher:
    """Publishes listen events keyed by user (and other records: ``publish_raw``) for
    ``service``; never blocks the caller on the broker.

    A poll thread serves delivery reports and watches delivery (``status``). It rebuilds the
    producer when librdkafka reports a fatal error (fenced) or when events stop leaving it
    for ``KafkaSettings.rebuild_after_s`` (a restarted broker that forgot the producer's id
    leaves an idempotent producer retrying forever, silently); the events the old producer
    still held are handed to the new one (at least once: the broker may already have some).
    """

    def __init__(
        self,
        settings: KafkaSettings,
        service: str,
        on_failure: Callable[[str], None] | None = None,
        poll_interval: float = 0.05,
        acked: bool = False,
        stall_s: float = 10.0,
        failure_window_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._service = service
        # Built for the "acks" durability mode: the API awaits ``publish_acked``.
        self.acked = acked
        self._on_failure = on_failure
        self._poll_interval = poll_interval
        self.stats = PublisherStats()
        self.tracker = DeliveryTracker(stall_s, failure_window_s)
        self.status: DeliveryStatus = HEALTHY
        self._carry: deque[tuple[str, bytes | None, bytes | None, Headers | None, _Delivery]]
        self._carry = deque()
        self._fatal: str | None = None
        self._rebuild_backoff = settings.rebuild_after_s
        self._next_rebuild = 0.0
        self._next_fatal_rebuild = 0.0
        self._first = _Delivery(self, None)
        self._producer = self._new_producer()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        config = producer_config(self._settings, self._service, self.acked)
        return Producer(config | {"error_cb": self._error})

    def _error(self, err: KafkaError) -> None:
        # Served by poll(); non-fatal errors (a broker down) librdkafka retries by itself.
        if err.fatal():
            self._fatal = f"{err.name()}: {err.str()}"

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(self._poll_interval)
            self._watch(time.monotonic())

    def _outstanding(self) -> int:
        return len(self._producer) + len(self._carry)

    def _watch(self, now: float) -> None:
        """One sample of delivery; rebuilds the producer when it is fenced or stuck."""
        if self._carry:
            self._resend()
        status = self.tracker.sample(now, self._outstanding())
        if status.pending == 0 or status.pending_age_s < self._settings.rebuild_after_s:
            self._rebuild_backoff = self._settings.rebuild_after_s
        why = None
        # A producer fenced again at once is rebuilt at most once a second.
        if self._fatal is not None and now >= self._next_fatal_rebuild:
            why, self._fatal = f"fatal error {self._fatal}", None
            self._next_fatal_rebuild = now + 1.0
        elif status.pending_age_s >= self._rebuild_backoff and now >= self._next_rebuild:
            why = f"no event delivered for {status.pending_age_s:.1f} s"
            # A broker that is down stays down whatever the producer: back off.
            self._rebuild_backoff = min(
                self._rebuild_backoff * 2, 8 * self._settings.rebuild_after_s
            )
        if why is not None:
            self._rebuild(why)
            self._next_rebuild = now + self._settings.rebuild_after_s
            status = self.tracker.sample(now, self._outstanding())
        self.status = status

    def _rebuild(self, why: str) -> None:
        old = self._producer
        # New events go to the new producer from here on.
        self._producer = self._new_producer()
        self.tracker.rebuilt += 1
        logger.warning("rebuilding the Kafka producer (%s); %d events carried over", why, len(old))
        old.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + self._settings.flush_timeout_s
        while len(old) and time.monotonic() < deadline:
            old.poll(0.05)  # each purged event's report lands in _carry
        left = len(old)
        if left:
            # Reports that never came: those events cannot be sent again, only counted.
            self._count_failure(
                STUCK_IN_REBUILT, f"{left} events stuck in a producer that was rebuilt", left
            )
        self._resend()

    def _resend(self) -> None:
        carry = self._carry
        while carry:
            topic, key, value, headers, delivery = carry[0]
            if not produce_with_room(self._producer, topic, key, value, headers, delivery, 0, 0):
                return  # the new producer's queue is full: the next round goes on
            carry.popleft()
            self.stats.carried_over += 1

    def _count_failure(self, error: str, reason: str, count: int = 1) -> None:
        """``count`` events failed with ``error`` (librdkafka's error name, or
        ``STUCK_IN_REBUILT``: a bounded label for ``on_failure``); ``reason`` is logged."""
        now = time.monotonic()
        for _ in range(count):
            self.tracker.failure(now)
        self.stats.failed += count
        logger.error("delivery failed (%s): %s", error, reason)
        if self._on_failure is not None:
            for _ in range(count):
                self._on_failure(error)

    def _delivered(self, err: KafkaError | None, msg: Message, delivery: _Delivery) -> None:
        if err is not None:
            if (err.code() in _CARRY_CODES or err.fatal()) and delivery.carries < MAX_CARRIES:
                again = _Delivery(self, delivery.then, delivery.carries + 1)
                topic = msg.topic() or ""  # a delivery report always names its topic
                self._carry.append((topic, msg.key(), msg.value(), msg.headers(), again))
                return
            self._count_failure(err.name(), f"delivery to {msg.topic()}: {err.str()}")
        if delivery.then is not None:
            delivery.then(err, msg)

    def publish(self, event: ListenEvent) -> None:
        self.publish_raw(
            self._settings.listens_topic, event.key, encode_listen_event(event), block=False
        )

    async def publish_acked(self, event: ListenEvent, timeout: float) -> None:
        """Publish and wait until the broker has the event (all in-sync replicas), at most
        ``timeout`` seconds; ``BackendUnavailableError`` if it refused it or did not answer
        in time (then the event may still arrive later)."""
        if not self.acked:
            raise RuntimeError("publish_acked needs a publisher built with acked=True")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[KafkaError | None] = loop.create_future()

        def delivered(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, done, err)

        self.publish_raw(
            self._settings.listens_topic,
            event.key,
            encode_listen_event(event),
            None,
            delivered,
            block=False,
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
        block: bool = True,
    ) -> None:
        """Hand one record to the producer. ``block=False`` (an event loop's caller): a full
        local queue fails at once instead of waiting for it to drain."""
        delivery = self._first if on_delivery is None else _Delivery(self, on_delivery)
        try:
            room = produce_with_room(
                self._producer,
                topic,
                key,
                value,
                list(headers) if headers else None,
                delivery,
                self._settings.produce_retries if block else 0,
                0.005,
            )
        except KafkaException as exc:  # a fenced producer refuses until it is rebuilt
            self._count_failure(exc.args[0].name(), f"produce refused: {exc}")
            raise BackendUnavailableError(f"the producer refused the event: {exc}") from None
        if not room:
            self.stats.buffer_full += 1
            raise BackendUnavailableError("the event buffer is full: the broker is not keeping up")
        self.tracker.enqueued += 1
        self.stats.produced += 1

    def pending(self) -> int:
        return self._outstanding()

    def flush(self, timeout: float | None = None) -> int:
        return int(
            self._producer.flush(self._settings.flush_timeout_s if timeout is None else timeout)
        )

    def close(self) -> None:
        self._stop.set()
        self._poller.join(timeout=self._settings.flush_timeout_s + 2)
        self._resend()
        left = self.flush() + len(self._carry)
        if left:
            logger.error("%d events were not delivered before shutdown", left)


def _is_fatal(err: KafkaError) -> bool:
    # produce() on a producer already failed says _FATAL without the fatal flag.
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


class DeliveringProducer:
    """A producer for records that must be on the broker before the caller goes on (the
    stream's training examples and dead letters): ``send`` hands records over, ``flush``
    returns once every record sent is delivered, or raises ``BackendUnavailableError``.

    ``flush`` blocks its thread while records are in flight: one round of broker latency.

    An idempotent producer whose broker restarted without its data is fenced for good (a
    fatal error: its producer id is unknown there); a failure after one replaces the
    librdkafka producer, so that the caller's retry goes through a fresh one.
    """

    def __init__(self, settings: KafkaSettings, service: str, linger_ms: int | None = None) -> None:
        """``linger_ms``: how long records wait to be batched (default: the settings')."""
        self._settings = settings
        self._config = producer_config(settings, service) | {"error_cb": self._on_error}
        if linger_ms is not None:
            self._config["linger.ms"] = linger_ms
        self._producer = Producer(self._config)
        self._errors: list[KafkaError] = []
        self._fatal = False

    def _on_error(self, err: KafkaError) -> None:
        if _is_fatal(err):
            self._fatal = True
        else:  # all brokers down, authentication: what librdkafka would have logged itself
            logger.warning("kafka producer: %s", err)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._errors.append(err)
            if _is_fatal(err):
                self._fatal = True

    def _drop_pending(self) -> None:
        """Drop every record not delivered yet; their delivery callbacks report it now."""
        self._producer.purge()
        self._producer.poll(0)

    def _renew_if_fatal(self) -> None:
        if not self._fatal:
            return
        logger.warning("the producer hit a fatal error (fenced by a new broker?): replacing it")
        self._drop_pending()
        self._producer = Producer(self._config)
        self._fatal = False

    def send(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: Headers | None = None,
    ) -> None:
        """Hand (key, value) records to librdkafka, which sends them in its own threads."""
        for key, value in records:
            try:
                room = produce_with_room(
                    self._producer,
                    topic,
                    key,
                    value,
                    headers,
                    self._delivered,
                    self._settings.produce_retries,
                    0.01,
                )
            except KafkaException as exc:
                self._fatal = self._fatal or _is_fatal(exc.args[0])
                self._fail(f"the producer refused a record: {exc.args[0]}")
            if not room:
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

    def deliver_each(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes | None, Headers]],
    ) -> list[str | None]:
        """Send (key, value, headers) records and wait for them (at most flush_timeout_s):
        per record, None when delivered, else the name of its error (a record refused at
        once, too large say, does not hold the others back). Nothing is left queued."""
        errors: list[str | None] = [None] * len(records)

        def reporter(i: int) -> Callable[[KafkaError | None, Message], None]:
            def delivered(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    errors[i] = err.name()

            return delivered

        retries = self._settings.produce_retries
        for i, (key, value, headers) in enumerate(records):
            try:
                room = produce_with_room(
                    self._producer, topic, key, value, headers, reporter(i), retries, 0.01
                )
            except KafkaException as exc:  # refused before sending: too large, say
                errors[i] = exc.args[0].name()
                self._fatal = self._fatal or _is_fatal(exc.args[0])
                continue
            if not room:
                errors[i] = "QUEUE_FULL"
        if self._producer.flush(self._settings.flush_timeout_s):
            self._drop_pending()  # undelivered in time: their callbacks report it
        self._renew_if_fatal()
        return errors

    def _fail(self, why: str) -> None:
        # Whatever is left would be sent again by the caller's retry: drop it here.
        self._drop_pending()
        self._errors = []
        self._renew_if_fatal()
        raise BackendUnavailableError(f"delivery to the broker failed: {why}")

    def close(self) -> None:
        self._producer.flush(self._settings.flush_timeout_s)
