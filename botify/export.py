"""Export the listen-events topic to Parquet, or to the original botify JSON-lines log.

Reads every partition from the beginning up to its high watermark at the start, so the
export is a consistent snapshot even while traffic continues. Records that fail to decode
are counted (and left to the dead-letter topic's care), never silently dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition

from botify.errors import BackendUnavailableError, InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.settings import KafkaSettings

SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("message", pa.string()),
        ("timestamp", pa.int64()),
        ("user", pa.int64()),
        ("track", pa.int64()),
        ("time", pa.float64()),
        ("recommendation", pa.int64()),
        ("latency", pa.float64()),
        ("recommender", pa.string()),
        ("model_version", pa.int64()),
        ("experiments", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
    ]
)


@dataclass(frozen=True)
class ExportResult:
    path: Path
    rows: int
    bad_records: int


def read_events(
    settings: KafkaSettings, timeout_s: float = 120.0
) -> tuple[list[tuple[ListenEvent, int, int]], int]:
    """All decodable events on the topic now, with (partition, offset); and the bad count."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "botify-export",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
        }
    )
    try:
        meta = consumer.list_topics(settings.listens_topic, timeout=10).topics.get(
            settings.listens_topic
        )
        if meta is None or meta.error is not None:
            raise BackendUnavailableError(f"topic {settings.listens_topic} not found")
        ends: dict[int, int] = {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(settings.listens_topic, p), timeout=10
            )
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(settings.listens_topic, p, 0) for p in ends])
        events: list[tuple[ListenEvent, int, int]] = []
        bad = 0
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error():
                    continue
                p, o = msg.partition(), msg.offset()
                if p not in ends or o >= ends[p]:
                    continue
                try:
                    events.append((decode_listen_event(msg.value()), p, o))
                except InvalidEventError:
                    bad += 1
                if o >= ends[p] - 1:
                    del ends[p]
        if ends:
            raise BackendUnavailableError(f"export timed out with partitions {sorted(ends)} unread")
        return events, bad
    finally:
        consumer.close()


def export_parquet(settings: KafkaSettings, path: Path | str) -> ExportResult:
    events, bad = read_events(settings)
    rows = {name: [] for name in SCHEMA.names}
    for e, p, o in events:
        d = e.model_dump()
        for k in (
            "event_id",
            "message",
            "timestamp",
            "user",
            "track",
            "time",
            "recommendation",
            "latency",
            "recommender",
            "model_version",
        ):
            rows[k].append(d[k])
        rows["experiments"].append(orjson.dumps(e.experiments).decode())
        rows["partition"].append(p)
        rows["offset"].append(o)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=SCHEMA), path)
    return ExportResult(path, len(events), bad)


def export_jsonl(settings: KafkaSettings, path: Path | str) -> ExportResult:
    """The original botify log format, one request a line, in timestamp order."""
    events, bad = read_events(settings)
    events.sort(key=lambda x: (x[0].timestamp, x[1], x[2]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for e, _, _ in events:
            fh.write(
                orjson.dumps(
                    {
                        "message": e.message,
                        "timestamp": e.timestamp,
                        "user": e.user,
                        "track": e.track,
                        "time": e.time,
                        "latency": e.latency,
                        "recommendation": e.recommendation,
                        "experiments": e.experiments,
                    }
                )
                + b"\n"
            )
    return ExportResult(path, len(events), bad)
