"""The stream worker's consumer loop: confluent-kafka (librdkafka) feeding ``ListenProcessor``.

Not faust: ``bench/bench_stream.py --throughput`` measured a faust agent that does nothing
but decode at ~6,800 events/s, 0.05 of a bare confluent-kafka consumer (~150,000/s) in the
same run; faust's per-record machinery (events, channels, acks) was the ceiling, not our
code. State lives in Redis, not in faust tables, so faust had nothing else to offer here.

At-least-once: a batch's offsets are stored only once the processor has finished it (its
commits' replies read, its dead letters delivered), and librdkafka commits stored offsets
periodically, on a rebalance and on close. One batch stays in flight while the next one is
consumed and folded (``ListenProcessor.submit``): a rebalance, which runs inside ``consume``,
can revoke a partition with that batch's offsets not yet stored; the next owner replays it,
and the processor finishes it before it folds anything after the rebalance. A crash replays
what was not committed, which the replay-safe fold makes harmless.

The loop is one asyncio task; ``consume`` blocks it for at most ``batch_wait_s``: nothing
else runs on this loop between batches.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from botify.catalog import load_catalog
from botify.errors import BackendUnavailableError
from botify.kafka import STREAM, DeliveringProducer, consumer_config, topic_identity
from botify.settings import Settings
from botify.state import StateConfig
from botify.storage import open_user_state_store
from botify.telemetry import Heartbeat
from services.stream.agents import DeadLetterRecord, ListenProcessor, Record, StreamObserver

logger = logging.getLogger(__name__)


class _DeadLetterTopic:
    """Dead letters, a batch's sent together and delivered (or refused) before its source
    offsets are stored."""

    def __init__(self, producer: DeliveringProducer, topic: str) -> None:
        self._producer, self._topic = producer, topic

    async def send_many(self, records: Sequence[DeadLetterRecord]) -> list[str | None]:
        return self._producer.deliver_each(self._topic, records)


class _ExampleTopic:
    """The training examples topic: records are sent in batches and waited for together, so
    a batch pays one round of broker latency, not one per example."""

    def __init__(self, producer: DeliveringProducer, topic: str) -> None:
        self._producer, self._topic = producer, topic

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self._producer.send_batch(self._topic, records)

    async def flush(self) -> None:
        self._producer.flush()


def batch_offsets(
    records: Sequence[Record], next_offset: dict[int, int]
) -> tuple[list[TopicPartition], bool]:
    """In one walk over a batch: the offsets to store once it is processed (one past each
    partition's last record), and whether some record's offset is below its partition's
    previous one (or below ``next_offset``, where the last batch left it)."""
    seen = dict(next_offset)
    last: dict[tuple[str, int], int] = {}
    went_back = False
    for r in records:
        partition, offset = r.partition, r.offset
        if offset < seen.get(partition, -1):
            went_back = True
        seen[partition] = offset + 1
        last[(r.topic, partition)] = offset
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()], went_back


def records_of(messages: Sequence[Message]) -> list[Record]:
    """The records of a consumed batch; consumer errors are logged (librdkafka retries)."""
    records = []
    for m in messages:
        error = m.error()
        if error is None:  # a consumed record: its topic, partition and offset are set
            records.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value()))  # type: ignore[arg-type]
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
        # Read first: a bad catalog path fails the worker before it joins the group.
        known_tracks = (
            frozenset(load_catalog(settings.catalog.path).by_id) if stream.check_tracks else None
        )
        self._heartbeat = heartbeat
        self._consumer = Consumer(
            consumer_config(kafka, stream.app_id, STREAM)
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
        self._producer = DeliveringProducer(kafka, STREAM, linger_ms=stream.linger_ms)
        self._store = open_user_state_store(settings.redis)
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
            dead_letter_max_bytes=stream.dead_letter_max_bytes,
            retry_attempts=stream.retry_attempts,
            known_tracks=known_tracks,
            # Offsets without it could pass for an old broker's (a broker restarted without
            # its data): no identity, no start.
            source=topic_identity(kafka, kafka.listens_topic, service=STREAM),
        )
        # Per partition, the offset after the last record processed.
        self._next: dict[int, int] = {}
        # False: the identity must be looked up again before the next batch is processed.
        self._identity_known = True
        self._assigned_before = False

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # After each rebalance; botify up and the tests wait for this line.
        self.processor.forget()
        # A new broker (one restarted without its data) means a new group too, so a
        # rebalance: the identity is looked up again before the next batch (in run(), off
        # this callback: the admin round trip must not block the loop). The first
        # assignment follows the lookup the constructor made.
        if self._assigned_before:
            self._identity_known = False
        self._assigned_before = True
        self._next.clear()
        mine = sorted(tp.partition for tp in partitions)
        topic = self._settings.kafka.listens_topic
        logger.warning("botify stream worker ready: partitions %s of %s", mine, topic)

    async def _learn_identity(self) -> None:
        """Look the topic's identity up, retrying until the broker says: a batch processed
        under a stale identity would take a restarted broker's events for replays."""
        kafka, retry = self._settings.kafka, self.processor.retry
        topic = kafka.listens_topic
        delay = retry.first
        while True:
            try:
                source = await asyncio.to_thread(topic_identity, kafka, topic, service=STREAM)
                break
            except BackendUnavailableError as exc:
                logger.error("topic identity unknown, no record is processed until it is: %s", exc)
                if self._heartbeat is not None:
                    self._heartbeat.beat()
                await asyncio.sleep(delay)  # the backoff of every other backend step
                delay = min(delay * retry.factor, retry.cap)
        self._identity_known = True
        if source != self.processor.source:
            logger.warning(
                "topic %s is now %s (was %s): its offsets start a new lifetime",
                topic,
                source,
                self.processor.source,
            )
            self.processor.source = source

    async def _finish_and_learn_identity(self, in_flight: deque[list[TopicPartition]]) -> None:
        """Finish the batches in flight, then look the topic's identity up. Their offsets
        are stored only if it did not change: offsets of the broker's previous lifetime,
        committed in the new one, would skip its records (their state writes stand)."""
        done = await self.processor.finish()
        before = self.processor.source
        await self._learn_identity()
        if self.processor.source == before:
            self._store_offsets(in_flight, done)
            return
        for _ in done:
            in_flight.popleft()
        if done:
            logger.warning(
                "offsets of %d batch(es) read before the topic's new lifetime not stored",
                len(done),
            )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.processor.forget()
        # Everything processed is stored; hand it over before another member starts there.
        try:
            consumer.commit(asynchronous=False)
        except Exception as exc:  # nothing stored yet, or the group is already gone
            logger.info("commit on revoke: %s", exc)

    def _store_offsets(self, in_flight: deque[list[TopicPartition]], done: list[list[str]]) -> None:
        """Store the offsets of the batches just finished (the oldest ones in flight)."""
        for _ in done:
            stored = in_flight.popleft()
            try:
                self._consumer.store_offsets(offsets=stored)
            except KafkaException as exc:
                # The batch outlasted max.poll.interval.ms and the group gave its partitions
                # to another member, which replays it (replay-safe).
                logger.warning("offsets of a processed batch not stored: %s", exc)

    async def run(self) -> None:
        """Consume and process until cancelled; then commit what was processed and leave."""
        stream = self._settings.stream
        self._consumer.subscribe(
            [self._settings.kafka.listens_topic], on_assign=self._assigned, on_revoke=self._revoked
        )
        # The offsets to store for each batch in flight, oldest first.
        in_flight: deque[list[TopicPartition]] = deque()
        processor = self.processor
        try:
            while True:
                if self._heartbeat is not None:
                    self._heartbeat.beat()
                messages = self._consumer.consume(stream.batch_size, stream.batch_wait_s)
                records = records_of(messages)
                if records:
                    stored, went_back = batch_offsets(records, self._next)
                    if not self._identity_known or went_back:
                        # After a rebalance; or a broker restarted without its data that
                        # librdkafka met as "offset out of range" and read from 0.
                        await self._finish_and_learn_identity(in_flight)
                    self._next.update((tp.partition, tp.offset) for tp in stored)
                    in_flight.append(stored)
                    # The batch before this one is finished while this one's commits are
                    # on their way (submit): Redis works while the worker folds.
                    self._store_offsets(in_flight, await processor.submit(records))
                    if not stream.pipeline:
                        self._store_offsets(in_flight, await processor.finish())
                else:
                    self._store_offsets(in_flight, await processor.finish())
                    await asyncio.sleep(0)  # let a pending stop signal in
        finally:
            processor.abandon()  # not stored: replayed by whoever takes its partitions
            self._consumer.close()  # commits the stored offsets and leaves the group
            self._producer.close()
            await self._store.close()


def tune_collector(young_threshold: int) -> None:
    """Once start-up is done: what it made (modules, settings, metrics) lives as long as the
    process, out of the collector's way; then fewer, larger passes over the young objects
    (``StreamSettings.gc_threshold``)."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


async def serve(
    settings: Settings,
    observer: StreamObserver | None = None,
    heartbeat: Heartbeat | None = None,
) -> None:
    """Run one worker until SIGTERM or SIGINT; ``observer`` gets its metrics, ``heartbeat``
    a beat each time round the loop.

    A signal cancels the loop wherever it waits (a retry's backoff included) and the worker
    commits what it processed and leaves its group; if that is not done within
    ``stream.shutdown_grace_s`` (a broker that does not answer the final commit), the process
    exits anyway: what it had not committed is replayed, harmlessly."""
    worker = StreamWorker(settings, observer, heartbeat)
    task = asyncio.current_task()
    assert task is not None
    _watch_stop_signals(asyncio.get_running_loop(), task, settings.stream.shutdown_grace_s)
    try:
        await worker.run()
    except asyncio.CancelledError:
        logger.warning("botify stream worker stopped")


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _watch_stop_signals(
    loop: asyncio.AbstractEventLoop, task: asyncio.Task[None], grace_s: float
) -> None:
    """On the first stop signal: start the grace period's clock at once, then cancel ``task``
    (the loop commits what it processed and leaves its group when it next gets control)."""
    stopped = threading.Lock()

    def stop(name: str) -> None:
        if not stopped.acquire(blocking=False):
            return
        logger.warning("botify stream worker stopping (%s)", name)
        watchdog = threading.Timer(grace_s, _exit_late, [grace_s])
        watchdog.daemon = True  # a clean exit within the grace does not wait for it
        watchdog.start()
        loop.call_soon_threadsafe(task.cancel)

    if STOP_SIGNALS <= signal.pthread_sigmask(signal.SIG_BLOCK, []):

        def wait() -> None:
            stop(signal.Signals(signal.sigwait(STOP_SIGNALS)).name)

        threading.Thread(target=wait, name="stop-signals", daemon=True).start()
    # Also a handler, for a signal delivered to a thread that does not block it (one a
    # native library started before the mask was set): it runs when the main thread next
    # runs Python, later, but never leaves the default action (death without a commit).
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: stop(signal.Signals(signum).name))


def _exit_late(grace_s: float) -> None:
    # Raw writes: the main thread may hold a logging lock (a full stderr pipe) forever.
    message = (
        f"botify stream worker did not stop within {grace_s:g} s (stream.shutdown_grace_s): "
        "exiting; what it had not committed is replayed\n"
    )
    os.write(2, message.encode())
    os._exit(1)
