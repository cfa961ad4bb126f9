"""Export the listens topic to a file: Parquet (default) or the original botify JSON lines.

The export reads every partition from the beginning up to its high watermark at the start,
with explicit assignment (no consumer group joins, nothing is committed), and stops there
even if producers keep writing. The watermark is the one the broker reports with the first
fetch from each partition, taken once: Tansu answers ListOffsets (``get_watermark_offsets``
uncached, ``offsets_for_times``) with wrong values, while its fetch responses are right.
Records that do not decode, or that the file's column types cannot hold, are counted,
reported and skipped: one bad record never aborts an export. Rows are
written in batches as they arrive, to a ``.partial`` file renamed at the end, so a file
at ``path`` is always complete.

Parquet columns are the ``ListenEvent`` fields, with ``experiments`` as a JSON string
(``{"AA":"T1","RECOMMENDERS":"C"}``, keys sorted). The JSON-lines export writes exactly the
original log line: ``message, timestamp, user, track, time, latency, recommendation,
experiments`` (latency in seconds, timestamp in ms). Both keep each partition's offset
order; events are keyed by user, so a user's rows appear in their true order, which breaks
millisecond timestamp ties for the analysis (its sort is stable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from botify.errors import BackendUnavailableError, ConfigError, InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.kafka import EXPORT, build_consumer
from botify.settings import KafkaSettings

logger = logging.getLogger(__name__)

Format = Literal["parquet", "jsonl"]
ORIGINAL_FIELDS = (
    "message",
    "timestamp",
    "user",
    "track",
    "time",
    "latency",
    "recommendation",
    "experiments",
)
_PARQUET_FIELDS: list[pa.Field[Any]] = [
    pa.field("schema_version", pa.int8(), nullable=False),
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("timestamp", pa.int64(), nullable=False),
    pa.field("user", pa.int64(), nullable=False),
    pa.field("track", pa.int64(), nullable=False),
    pa.field("time", pa.float64(), nullable=False),
    pa.field("recommendation", pa.int64()),
    pa.field("latency", pa.float64(), nullable=False),
    pa.field("recommender", pa.string(), nullable=False),
    pa.field("model_version", pa.int64()),
    pa.field("experiments", pa.string(), nullable=False),
]
PARQUET_SCHEMA = pa.schema(_PARQUET_FIELDS)
MAX_BAD_SAMPLES = 20


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    bad_records: int
    format: Format = "parquet"
    bad_samples: tuple[str, ...] = ()  # "partition:offset: reason", the first few


# What building a file's rows can raise for a value its types cannot hold.
_UNWRITABLE = (pa.ArrowException, OverflowError, TypeError, ValueError, orjson.JSONEncodeError)


class _Sink(Protocol):
    def write_batch(self, events: list[ListenEvent]) -> None:
        """Write all the events, or none of them (raising one of ``_UNWRITABLE``)."""

    def close(self) -> None: ...


def _write_or_skip(sink: _Sink, events: list[ListenEvent]) -> list[tuple[int, str]]:
    """Write the events; those that cannot be written are skipped: (index, reason). A batch
    that fails is written again one event at a time, so the rest still go in."""
    try:
        sink.write_batch(events)
        return []
    except _UNWRITABLE:
        pass
    skipped = []
    for i, event in enumerate(events):
        try:
            sink.write_batch([event])
        except _UNWRITABLE as exc:
            skipped.append((i, f"cannot be written: {exc}"))
    return skipped


class _ParquetSink:
    def __init__(self, path: Path) -> None:
        self._writer = pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd")

    def write_batch(self, events: list[ListenEvent]) -> None:
        columns: dict[str, list[object]] = {name: [] for name in PARQUET_SCHEMA.names}
        for event in events:
            for name, value in event.model_dump(mode="python").items():
                columns[name].append(experiments_json(value) if name == "experiments" else value)
        # Built whole before anything is written: a failed batch leaves the file as it was.
        self._writer.write_batch(pa.RecordBatch.from_pydict(columns, schema=PARQUET_SCHEMA))

    def close(self) -> None:
        self._writer.close()


class _JsonlSink:
    def __init__(self, path: Path) -> None:
        self._file: IO[bytes] = path.open("wb")

    def write_batch(self, events: list[ListenEvent]) -> None:
        self._file.write(b"".join(original_line(e) for e in events))

    def close(self) -> None:
        self._file.close()


def experiments_json(experiments: dict[str, str]) -> str:
    return orjson.dumps(experiments, option=orjson.OPT_SORT_KEYS).decode()


def original_line(event: ListenEvent) -> bytes:
    """One line of the original botify log, newline included."""
    row = {name: getattr(event, name) for name in ORIGINAL_FIELDS}
    return orjson.dumps(row) + b"\n"


def export_listens(
    settings: KafkaSettings,
    path: Path | str,
    fmt: Format = "parquet",
    topic: str | None = None,
    batch_rows: int = 50_000,
    timeout_s: float = 120.0,
) -> ExportResult:
    """Write the topic's records up to the high watermarks at start to ``path``."""
    path = Path(path)
    topic = topic or settings.listens_topic
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    consumer = build_consumer(settings, EXPORT, overrides={"enable.partition.eof": True})
    sink: _Sink | None = None
    try:
        deadline = time.monotonic() + timeout_s
        partitions = _assign_all(consumer, topic, timeout=min(timeout_s, 15.0))
        sink = _ParquetSink(partial) if fmt == "parquet" else _JsonlSink(partial)
        rows, bad, samples = _drain(consumer, topic, partitions, sink, batch_rows, deadline)
        sink.close()
        sink = None
        partial.replace(path)
    finally:
        if sink is not None:
            sink.close()
        partial.unlink(missing_ok=True)
        consumer.close()
    logger.info("exported %d records of %s to %s (%d bad)", rows, topic, path, bad)
    return ExportResult(path, rows, bad, fmt, tuple(samples))


def export_parquet(settings: KafkaSettings, path: Path | str) -> ExportResult:
    return export_listens(settings, path, fmt="parquet")


def export_jsonl(settings: KafkaSettings, path: Path | str) -> ExportResult:
    return export_listens(settings, path, fmt="jsonl")


def _assign_all(consumer: Consumer, topic: str, timeout: float) -> list[int]:
    """Assign every partition of ``topic`` from its beginning."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise BackendUnavailableError(f"cannot list topic {topic}: {exc}") from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        raise ConfigError(f"topic {topic} does not exist")
    partitions = sorted(described.partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return partitions


def _drain(
    consumer: Consumer,
    topic: str,
    partitions: list[int],
    sink: _Sink,
    batch_rows: int,
    deadline: float,
) -> tuple[int, int, list[str]]:
    # partition -> end offset (None until its first fetch), for partitions not yet done
    pending: dict[int, int | None] = dict.fromkeys(partitions)
    batch: list[ListenEvent] = []
    where: list[Message] = []  # the batch's records, for reporting one that cannot be written
    rows = bad = 0
    samples: list[str] = []

    def flush() -> None:
        nonlocal rows, bad, batch, where
        skipped = _write_or_skip(sink, batch)
        for i, reason in skipped:
            _report_bad(where[i], reason, samples)
        rows += len(batch) - len(skipped)
        bad += len(skipped)
        batch, where = [], []

    while pending:
        if time.monotonic() > deadline:
            raise BackendUnavailableError(
                f"export of {topic} timed out with {rows + len(batch) + bad} records read; "
                f"partitions {sorted(pending)} unfinished"
            )
        for msg in consumer.consume(num_messages=min(batch_rows, 10_000), timeout=0.5):
            partition, offset, error = msg.partition(), msg.offset(), msg.error()
            if partition is None or partition not in pending:
                continue
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.pop(partition)
                    continue
                raise BackendUnavailableError(f"reading {topic}[{partition}]: {error}")
            if offset is None:  # every record has one; only error events come without
                raise BackendUnavailableError(f"reading {topic}[{partition}]: no offset")
            end = pending[partition]
            if end is None:
                tp = TopicPartition(topic, partition)
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                end = pending[partition] = high if high > offset else offset + 1
            if offset >= end:  # written after the export started
                pending.pop(partition)
                continue
            try:
                batch.append(decode_listen_event(msg.value()))
                where.append(msg)
            except InvalidEventError as exc:
                bad += 1
                _report_bad(msg, str(exc), samples)
            if offset >= end - 1:
                pending.pop(partition)
            if len(batch) >= batch_rows:
                flush()
    if batch:
        flush()
    return rows, bad, samples


def _report_bad(msg: Message, reason: str, samples: list[str]) -> None:
    where = f"{msg.partition()}:{msg.offset()}"
    if len(samples) < MAX_BAD_SAMPLES:
        samples.append(f"{where}: {reason}")
        logger.warning("skipping bad record %s[%s]: %s", msg.topic(), where, reason)
