"""``DeliveringProducer``: records that must be on the broker before the caller goes on."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import (
    KafkaError,
    KafkaException,
    Message,
    Producer,
)

from botify.errors import BackendUnavailableError
from botify.kafka.clients import Headers, is_fatal, produce_with_room, producer_config
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)


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
        self._config = producer_config(settings, service)
        if linger_ms is not None:
            self._config["linger.ms"] = linger_ms
        self._generation = 0
        self._producer = self._new_producer()
        self._errors: list[KafkaError] = []
        self._fatal = False
        self._closed = False

    def _new_producer(self) -> Producer:
        """A producer whose fatal errors count only while it is the newest one built."""
        self._generation += 1
        generation = self._generation

        def on_error(err: KafkaError) -> None:
            self._on_error(err, generation)

        return Producer(self._config | {"error_cb": on_error})

    def _on_error(self, err: KafkaError, generation: int) -> None:
        if is_fatal(err):
            # A replaced producer's late error (served by its close) would otherwise
            # replace the fresh one for nothing.
            self._fatal = self._fatal or generation == self._generation
        else:  # all brokers down, authentication: what librdkafka would have logged itself
            logger.warning("kafka producer: %s", err)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._errors.append(err)
            if is_fatal(err):
                self._fatal = True

    def _check_open(self) -> None:
        if self._closed:  # librdkafka's closed producer would raise a RuntimeError: a 500
            raise BackendUnavailableError("the producer is shut down")

    def _drop_pending(self) -> None:
        """Drop every record not delivered yet; their delivery callbacks report it now."""
        self._producer.purge()
        self._producer.poll(0)

    def _renew_if_fatal(self) -> None:
        if not self._fatal:
            return
        logger.warning("the producer hit a fatal error (fenced by a new broker?): replacing it")
        self._drop_pending()
        old, self._producer = self._producer, self._new_producer()
        old.close()  # purged: at once; dropped, it would reconnect until collected
        self._fatal = False

    def send(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: Headers | None = None,
    ) -> None:
        """Hand (key, value) records to librdkafka, which sends them in its own threads."""
        self._check_open()
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
                self._fatal = self._fatal or is_fatal(exc.args[0])
                self._fail(f"the producer refused a record: {exc.args[0]}")
            if not room:
                self._fail("the producer's buffer stays full")

    def send_batch(self, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]) -> None:
        """``send`` for records without headers, handed to librdkafka in one call (a third of
        the cost per record of ``produce``: the stream sends a training example per listen)."""
        self._check_open()
        messages = [{"key": key, "value": value} for key, value in records]
        queued = self._producer.produce_batch(topic, messages, on_delivery=self._delivered)
        if queued < len(messages):
            # The ones the local queue refused (marked so) go one by one, waiting for room.
            self.send(topic, [(m["key"], m["value"]) for m in messages if "_error" in m])

    def flush(self) -> None:
        """Wait until every record sent so far is delivered; on failure drop the rest and
        raise ``BackendUnavailableError``."""
        self._check_open()
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
        self._check_open()
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
                self._fatal = self._fatal or is_fatal(exc.args[0])
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
        """Deliver what is outstanding (at most ``flush_timeout_s``), then stop the client."""
        if self._closed:
            return
        self._closed = True
        left = self._producer.flush(self._settings.flush_timeout_s)
        if left:
            logger.error("%d records were not delivered before shutdown", left)
        # close() waits for undelivered records without a deadline: they are given up first.
        self._producer.purge()
        self._producer.close()
