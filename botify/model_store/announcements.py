"""Model announcements on Kafka: "``model``'s pointer now names ``version``".

Best effort: the pointer in Redis is the source of truth, announcements only spare readers
the wait for their next poll of it. ``ModelAnnouncer`` sends them (the trainer, and
``botify models rollback``); ``AnnouncementFeed`` reads them in a thread of its own (the API).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Protocol

import jsonschema
import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from botify.errors import BackendUnavailableError, BotifyError, InvalidEventError
from botify.kafka import API, ListenPublisher, build_consumer, create_topics
from botify.model_store.artifact_files import model_meta_schema, schema_error
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)

# One partition keeps every model's announcements in publish order; there are few of them.
ANNOUNCE_PARTITIONS = 1


@cache
def _announcement_validator() -> jsonschema.Draft202012Validator:
    defs = model_meta_schema()["$defs"]
    return jsonschema.Draft202012Validator({"$ref": "#/$defs/announcement", "$defs": defs})


# -- announcements -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Announcement:
    """``model``'s pointer now names ``version``, whose files are at ``path``; ``rollback``:
    it moved back (readers take it even though they serve a newer version)."""

    model: str
    version: int
    path: str
    created_ms: int
    rollback: bool = False

    def to_bytes(self) -> bytes:
        doc = asdict(self)
        if not self.rollback:  # a promotion reads as it did before rollbacks existed
            del doc["rollback"]
        return orjson.dumps(doc)


def announcement_from_bytes(raw: bytes | str | None) -> Announcement:
    """Decode and validate one announcement record; ``InvalidEventError`` says what is wrong."""
    if raw is None:
        raise InvalidEventError("model announcement: record has no value")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEventError(f"model announcement: not JSON: {exc}") from None
    problem = schema_error(_announcement_validator(), doc)
    if problem is not None:
        raise InvalidEventError(f"model announcement: {problem}")
    return Announcement(**doc)


class Announcer(Protocol):
    """What the store needs to announce a pointer move (``ModelAnnouncer``)."""

    def announce(self, announcement: Announcement) -> bool: ...


class ModelAnnouncer:
    """Sends ``Announcement``s for ``service``, keyed by model name, waiting for the
    broker's ack."""

    def __init__(self, kafka: KafkaSettings, topic: str, service: str) -> None:
        self._kafka = kafka
        self._topic = topic
        self._service = service
        self._publisher = ListenPublisher(kafka, service)
        self._topic_ready = False

    def announce(self, announcement: Announcement) -> bool:
        """True once the broker has it. False (logged) if not: readers then find the version
        at their next poll of the pointer, so a failure here loses nothing."""
        try:
            if not self._topic_ready:
                create_topics(
                    self._kafka, {self._topic: ANNOUNCE_PARTITIONS}, service=self._service
                )
                self._topic_ready = True
            failed = self._publisher.stats.failed
            self._publisher.publish_raw(
                self._topic, announcement.model.encode(), announcement.to_bytes()
            )
            left = self._publisher.flush()
        except (BotifyError, KafkaException) as exc:
            logger.warning(
                "announcing %s v%d failed: %s", announcement.model, announcement.version, exc
            )
            return False
        if left or self._publisher.stats.failed != failed:
            logger.warning(
                "announcement of %s v%d was not delivered", announcement.model, announcement.version
            )
            return False
        return True

    def close(self) -> None:
        self._publisher.close()


class AnnouncementFeed:
    """Calls ``on_announcement`` from a background thread for every valid announcement.

    The consumer joins no group: it ``assign()``s every partition from offset 0. Starting at
    the end would need an offset lookup, which Tansu answers unreliably (tried here: "end"
    landed two records before the end); replaying from the start is cheap (one record per
    published version) and callers skip versions they already serve.
    Invalid records are counted and logged, never fatal; a lost broker is retried."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        on_announcement: Callable[[Announcement], None],
        poll_timeout_s: float = 0.5,
        retry_s: float = 2.0,
        service: str = API,
    ) -> None:
        self._kafka = kafka
        self._topic = topic
        self._service = service
        self._on = on_announcement
        self._poll_timeout_s = poll_timeout_s
        self._retry_s = retry_s
        self.received = 0
        self.invalid = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-announcements", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _open(self) -> Consumer:
        create_topics(self._kafka, {self._topic: ANNOUNCE_PARTITIONS}, service=self._service)
        consumer = build_consumer(
            self._kafka, self._service, overrides={"enable.auto.offset.store": False}
        )
        try:
            topic = consumer.list_topics(self._topic, timeout=10).topics.get(self._topic)
            if topic is None or topic.error is not None or not topic.partitions:
                raise BackendUnavailableError(f"topic {self._topic} has no partitions yet")
            consumer.assign([TopicPartition(self._topic, p, 0) for p in topic.partitions])
        except BaseException:
            consumer.close()
            raise
        return consumer

    def _run(self) -> None:
        consumer: Consumer | None = None
        while not self._stop.is_set():
            try:
                if consumer is None:
                    consumer = self._open()
                msg = consumer.poll(self._poll_timeout_s)
            except Exception as exc:  # the thread must outlive any broker trouble
                logger.warning("model announcements unavailable (retrying): %s", exc)
                if consumer is not None:
                    consumer.close()
                    consumer = None
                self._stop.wait(self._retry_s)
                continue
            if msg is None:
                continue
            if msg.error():
                # Transient (the client reconnects by itself); the poll loop is the safety net.
                logger.warning("model announcements: %s", msg.error())
                continue
            try:
                announcement = announcement_from_bytes(msg.value())
            except InvalidEventError as exc:
                self.invalid += 1
                logger.warning("skipping record at offset %d: %s", msg.offset(), exc)
                continue
            self.received += 1
            try:
                self._on(announcement)
            except Exception:
                logger.exception("handling %s failed", announcement)
        if consumer is not None:
            consumer.close()
