"""The stream worker's consumer loop: confluent-kafka (librdkafka) feeding ``ListenProcessor``.

Not faust: ``bench/bench_stream.py --throughput`` measured a faust agent that does nothing
but decode at ~6,800 events/s, 0.05 of a bare confluent-kafka consumer (~150,000/s) in the
same run; faust's per-record machinery (events, channels, acks) was the ceiling, not our
code. State lives in Redis, not in faust tables, so faust had nothing else to offer here.

At-least-once: a batch's offsets are stored only after ``handle_batch`` returns, and
librdkafka commits stored offsets periodically, on a rebalance and on close. Rebalance
callbacks run inside ``consume``, between batches, so no partition is revoked with a batch
in flight. A crash replays what was not committed, which the replay-safe fold makes
harmless.

The loop is one asyncio task; ``consume`` blocks it for at most ``batch_wait_s``: nothing
else runs on this loop between batches.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from botify.kafka import DeliveringProducer, consumer_config
from botify.settings import Settings
from botify.state import StateConfig
from botify.storage import open_user_state_store
from botify.telemetry import Heartbeat
from services.stream.agents import ListenProcessor, Record, StreamObserver

logger = logging.getLogger(__name__)


class _DeadLetterTopic:
    """Dead letters, each delivered before its source offset is stored."""

    def __init__(self, producer: DeliveringProducer, topic: str) -> None:
        self._producer, self._topic = producer, topic

    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self._producer.send(self._topic, [(key, value)], headers)
        self._producer.flush()


class _ExampleTopic:
    """The training examples topic: records are sent in batches and waited for together, so
    a batch pays one round of broker latency, not one per example."""

    def __init__(self, producer: DeliveringProducer, topic: str) -> None:
        self._producer, self._topic = producer, topic

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self._producer.send_batch(self._topic, records)

    async def flush(self) -> None:
        self._producer.flush()


def next_offsets(records: Sequence[Record]) -> list[TopicPartition]:
    """The offsets to store after processing ``records``: one past each partition's last."""
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = r.offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def records_of(messages: Sequence[Message]) -> list[Record]:
    """The records of a consumed batch; consumer errors are logged (librdkafka retries)."""
    records = []
    for m in messages:
        error = m.error()
        if error is None:
            records.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value()))
        elif error.code() != KafkaError._PARTITION_EOF:
            logger.warning("consumer error: %s", error)
    return records


class StreamWorker:
    """One member of the stream workers' consumer group."""

    def __init__(
        self,
        settings: Settings,
        observer: StreamObserver | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        kafka, stream = settings.kafka, settings.stream
        self._settings = settings
        self._heartbeat = heartbeat
        self._consumer = Consumer(
            consumer_config(kafka, stream.app_id)
            | {
                # Offsets are stored by us, after processing; librdkafka commits them.
                "enable.auto.commit": True,
                "enable.auto.offset.store": False,
                "auto.commit.interval.ms": stream.commit_interval_ms,
                # A broker may hold a fetch this long even when records wait (Tansu does).
                "fetch.wait.max.ms": stream.fetch_wait_ms,
                "heartbeat.interval.ms": max(100, kafka.session_timeout_ms // 4),
            }
        )
        self._producer = DeliveringProducer(
            kafka, client_id="botify-stream", linger_ms=stream.linger_ms
        )
        self._store = open_user_state_store(settings.redis.url)
        self.processor = ListenProcessor(
            store=self._store,
            dead_letters=_DeadLetterTopic(self._producer, kafka.dlq_topic),
            config=StateConfig(settings.state.history_size, settings.state.fail_threshold),
            examples=(
                _ExampleTopic(self._producer, kafka.examples_topic) if stream.examples else None
            ),
            chunk_users=stream.chunk_users,
            cache_users=stream.state_cache_users,
            observer=observer,
        )

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # After each rebalance; botify up and the tests wait for this line.
        self.processor.forget()
        mine = sorted(tp.partition for tp in partitions)
        topic = self._settings.kafka.listens_topic
        logger.warning("botify stream worker ready: partitions %s of %s", mine, topic)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.processor.forget()
        # Everything processed is stored; hand it over before another member starts there.
        try:
            consumer.commit(asynchronous=False)
        except Exception as exc:  # nothing stored yet, or the group is already gone
            logger.info("commit on revoke: %s", exc)

    async def run(self) -> None:
        """Consume and process until cancelled; then commit what was processed and leave."""
        stream = self._settings.stream
        self._consumer.subscribe(
            [self._settings.kafka.listens_topic], on_assign=self._assigned, on_revoke=self._revoked
        )
        try:
            while True:
                if self._heartbeat is not None:
                    self._heartbeat.beat()
                messages = self._consumer.consume(stream.batch_size, stream.batch_wait_s)
                records = records_of(messages)
                if records:
                    await self.processor.handle_batch(records)
                    try:
                        self._consumer.store_offsets(offsets=next_offsets(records))
                    except KafkaException as exc:
                        # The batch outlasted max.poll.interval.ms and the group gave its
                        # partitions to another member, which replays it (replay-safe).
                        logger.warning("offsets of a processed batch not stored: %s", exc)
                else:
                    await asyncio.sleep(0)  # let a pending stop signal in
        finally:
            self._consumer.close()  # commits the stored offsets and leaves the group
            self._producer.close()
            await self._store.close()


async def serve(
    settings: Settings,
    observer: StreamObserver | None = None,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Run one worker until SIGTERM or SIGINT; ``observer`` gets its metrics, ``heartbeat``
    a beat each time round the loop."""
    worker = StreamWorker(settings, observer, heartbeat)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await worker.run()
    except asyncio.CancelledError:
        logger.warning("botify stream worker stopped")
