"""``ListenPublisher``: the API's producer of listen events, which never blocks the caller.

``publish`` never waits for the broker, ``publish_acked`` waits for its acknowledgement
(with a deadline); a background thread serves delivery callbacks, counts failures, watches
delivery and rebuilds a fenced or stuck producer. A full local buffer raises
``BackendUnavailableError`` (at once for the API's event loop, after a bounded wait for other
callers).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    Producer,
)

from botify.delivery import HEALTHY, DeliveryStatus, DeliveryTracker
from botify.errors import BackendUnavailableError
from botify.events import ListenEvent, encode_listen_event
from botify.kafka.clients import Headers, produce_with_room, producer_config
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)


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
    # Events handed again to a rebuilt producer (the old one could not deliver them).
    carried_over: int = 0


# Delivery errors of an event that a rebuilt producer should send again: the old producer
# failed (fenced, unknown producer id) or we purged it to rebuild it.
_CARRY_CODES = frozenset({KafkaError._FATAL, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT})
# An event is carried over to at most this many rebuilt producers, then counted as failed.
MAX_CARRIES = 3
# The failure label of events a rebuilt producer still held and never reported.
STUCK_IN_REBUILT = "_REBUILT"
# The failure label of events given up when the publisher closed (purged or never sent).
GIVEN_UP_AT_SHUTDOWN = "_SHUTDOWN"


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
        # Set by close(): from then on a purged event is given up, not carried over.
        self._closing = False
        self._rebuild_backoff = settings.rebuild_after_s
        self._next_rebuild = 0.0
        self._next_fatal_rebuild = 0.0
        self._first = _Delivery(self, None)
        # Held while a record is produced and while the producer is swapped or closed: no
        # record goes to a producer after it was replaced or closed.
        self._lock = threading.Lock()
        self._closed = False
        self._generation = 0
        self._producer = self._new_producer()
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        """A producer whose errors count only while it is the newest one built."""
        self._generation += 1
        generation = self._generation

        def on_error(err: KafkaError) -> None:
            self._error(err, generation)

        config = producer_config(self._settings, self._service, self.acked)
        return Producer(config | {"error_cb": on_error})

    def _error(self, err: KafkaError, generation: int) -> None:
        # Served by poll(); non-fatal errors (a broker down) librdkafka retries by itself.
        # A replaced producer's late fatal error (served while it is drained) would
        # otherwise rebuild its fresh successor for nothing, sending its events twice.
        if err.fatal() and generation == self._generation:
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
        new = self._new_producer()
        with self._lock:  # new events go to the new producer from here on
            old, self._producer = self._producer, new
        self.tracker.rebuilt += 1
        logger.warning("rebuilding the Kafka producer (%s); %d events carried over", why, len(old))
        left = self._purge_and_close(old, self._settings.flush_timeout_s)
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
            if self._closing and err.code() in _CARRY_CODES:
                # Purged by close(): no producer will send it again; its waiter hears now.
                self._count_failure(GIVEN_UP_AT_SHUTDOWN, f"delivery to {msg.topic()}: shutdown")
            elif (err.code() in _CARRY_CODES or err.fatal()) and delivery.carries < MAX_CARRIES:
                again = _Delivery(self, delivery.then, delivery.carries + 1)
                topic = msg.topic() or ""  # a delivery report always names its topic
                self._carry.append((topic, msg.key(), msg.value(), msg.headers(), again))
                return
            else:
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
            with self._lock:
                if self._closed:
                    raise BackendUnavailableError("the event publisher is shut down")
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
        if self._closed:
            raise BackendUnavailableError("the event publisher is shut down")
        return self._flush(timeout)

    def _flush(self, timeout: float | None = None) -> int:
        return int(
            self._producer.flush(self._settings.flush_timeout_s if timeout is None else timeout)
        )

    def close(self) -> None:
        """Deliver what is outstanding (at most ``flush_timeout_s``), then stop the client.
        What is given up is counted as failed (``GIVEN_UP_AT_SHUTDOWN``), and acked publishes
        still waiting hear it at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        self._poller.join(timeout=self._settings.flush_timeout_s + 2)
        self._resend()
        left = self._flush() + len(self._carry)
        if left:
            logger.error("%d events were not delivered before shutdown", left)
        self._closing = True
        for _topic, _key, _value, _headers, delivery in self._carry:
            # Reported already (purged by a rebuild), with no room left on the new producer.
            self._count_failure(GIVEN_UP_AT_SHUTDOWN, "carried-over event not resent")
            if delivery.then is not None:
                delivery.then(KafkaError(KafkaError._PURGE_QUEUE, "shutdown"), None)  # type: ignore[arg-type]
        self._carry.clear()
        left = self._purge_and_close(self._producer, 1.0)
        if left:
            self._count_failure(
                GIVEN_UP_AT_SHUTDOWN, f"{left} events never reported at shutdown", left
            )

    def _purge_and_close(self, producer: Producer, within_s: float) -> int:
        """Purge ``producer``, serve its purged events' reports (each one counted by
        ``_delivered``) for at most ``within_s``, and close it once nothing is left: how
        many events never reported. Without close(), librdkafka's threads would go on
        reconnecting until the garbage collector found the producer (its callbacks refer
        back to this object); with events left it is not closed, since close() waits for
        them without a deadline."""
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        deadline = time.monotonic() + within_s
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0.05)
        left = len(producer)
        if not left:
            producer.close()
        return left
