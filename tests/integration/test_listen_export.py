"""Export the listens topic from a real broker to Parquet and to the original JSON lines."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from botify.analysis import load_log
from botify.errors import BackendUnavailableError, ConfigError
from botify.events import ListenEvent, encode_listen_event
from botify.kafka import ListenPublisher, ensure_topics
from botify.listen_export import ORIGINAL_FIELDS, export_listens
from botify.settings import KafkaSettings
from botify_cli.processes import free_port
from tests.factories import listen

BAD = [b"not json", b'{"message": "next"}', b'{"schema_version": 2}']


def events() -> list[ListenEvent]:
    out = []
    for user in range(12):
        experiments = {"AB": "C" if user % 2 else "T1", "AA.v2": "T2"}
        for i in range(5):
            last = i == 4
            out.append(
                listen(
                    user=user,
                    track=100 * user + i,
                    time=round((user + i) % 7 / 6, 2),
                    recommendation=None if last else 100 * user + i + 1,
                    message="last" if last else "next",
                    recommender="top_pop" if user % 3 else "sticky_artist",
                    experiments=experiments if user != 11 else {},
                )
            )
    return out


@pytest.fixture
def topic_with_events(broker_url: str, unique_topic: str) -> tuple[KafkaSettings, list]:
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic, partitions=3)
    ensure_topics(kafka)
    produced = events()
    publisher = ListenPublisher(kafka, "test")
    for event in produced:
        publisher.publish(event)
    for value in BAD:
        publisher.publish_raw(unique_topic, b"bad", value)
    assert publisher.flush(10) == 0
    publisher.close()
    return kafka, produced


def test_parquet_export_reads_back_exactly(
    topic_with_events: tuple[KafkaSettings, list[ListenEvent]], tmp_path: Path
) -> None:
    kafka, produced = topic_with_events
    out = tmp_path / "listens.parquet"
    result = export_listens(kafka, out, batch_rows=7, timeout_s=60)
    assert (result.rows, result.bad_records, result.path) == (len(produced), len(BAD), out)
    assert len(result.bad_samples) == len(BAD)
    assert not out.with_name(out.name + ".partial").exists()

    table = pq.read_table(out)
    assert table.column_names == list(ListenEvent.model_fields)
    assert table.schema.field("experiments").type == "string"
    read = sorted(table.to_pylist(), key=lambda r: r["event_id"])
    for row in read:
        row["experiments"] = json.loads(row["experiments"])
    expected = sorted((e.model_dump() for e in produced), key=lambda r: r["event_id"])
    assert read == expected


def test_jsonl_export_writes_the_original_log_line_and_round_trips(
    topic_with_events: tuple[KafkaSettings, list[ListenEvent]], tmp_path: Path
) -> None:
    kafka, produced = topic_with_events
    result = export_listens(kafka, tmp_path / "data.json", fmt="jsonl", timeout_s=60)
    assert (result.rows, result.bad_records) == (len(produced), len(BAD))
    lines = [json.loads(line) for line in (tmp_path / "data.json").read_text().splitlines()]
    assert all(list(line) == list(ORIGINAL_FIELDS) for line in lines)
    key = lambda r: (r["user"], r["timestamp"])  # noqa: E731
    expected = [{f: getattr(e, f) for f in ORIGINAL_FIELDS} for e in produced]
    assert sorted(lines, key=key) == sorted(expected, key=key)

    # Both exports feed the analysis the same rows.
    export_listens(kafka, tmp_path / "listens.parquet", timeout_s=60)
    from_jsonl = load_log(tmp_path / "data.json", "AB")
    from_parquet = load_log(tmp_path / "listens.parquet", "AB")
    order = ["user", "timestamp"]
    assert from_jsonl.frame.sort(order).equals(from_parquet.frame.sort(order))
    assert from_jsonl.excluded_rows == from_parquet.excluded_rows == 5  # user 11: no arms
    assert from_jsonl.frame.filter(pl.col("arm") == "T1").height == 6 * 5


def test_empty_topic_exports_an_empty_file_with_the_schema(
    broker_url: str, unique_topic: str, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic, partitions=2)
    ensure_topics(kafka)
    result = export_listens(kafka, tmp_path / "empty.parquet", timeout_s=30)
    assert (result.rows, result.bad_records) == (0, 0)
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_missing_topic_and_missing_broker_are_domain_errors(
    broker_url: str, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic="botify.test.absent.v1")
    with pytest.raises(ConfigError, match="does not exist"):
        export_listens(kafka, tmp_path / "x.parquet", timeout_s=10)
    nowhere = KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailableError):
        export_listens(nowhere, tmp_path / "y.parquet", timeout_s=3)
    assert not list(tmp_path.iterdir())


def test_export_ends_at_the_start_watermarks_while_producers_keep_writing(
    topic_with_events: tuple[KafkaSettings, list[ListenEvent]], tmp_path: Path
) -> None:
    kafka, produced = topic_with_events
    stop = threading.Event()
    later = {"sent": 0}

    def keep_writing() -> None:
        publisher = ListenPublisher(kafka, "test")
        while not stop.is_set():
            publisher.publish(listen(user=later["sent"] % 50))
            later["sent"] += 1
            time.sleep(0.001)
        publisher.close()

    writer = threading.Thread(target=keep_writing, daemon=True)
    writer.start()
    try:
        time.sleep(0.5)  # the topic is growing when the export starts
        result = export_listens(kafka, tmp_path / "moving.parquet", timeout_s=30)
    finally:
        stop.set()
        writer.join(10)
    assert result.rows >= len(produced)
    assert result.rows < len(produced) + later["sent"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_timestamps_past_the_schema_maximum_are_counted_and_skipped_not_fatal(
    broker_url: str, unique_topic: str, tmp_path: Path, fmt: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic, partitions=2)
    ensure_topics(kafka)
    good = [listen(user=u, experiments={"AB": "C"}) for u in range(10)]
    bad_stamps = [2**63, 2**64, 253_402_300_800_000]
    publisher = ListenPublisher(kafka, "test")
    for event in good:
        publisher.publish(event)
    for stamp in bad_stamps:
        raw = json.loads(encode_listen_event(listen(user=99)))
        publisher.publish_raw(unique_topic, b"99", json.dumps(raw | {"timestamp": stamp}).encode())
    assert publisher.flush(10) == 0
    publisher.close()

    out = tmp_path / f"listens.{fmt}"
    result = export_listens(kafka, out, fmt=fmt, timeout_s=60)  # type: ignore[arg-type]
    assert (result.rows, result.bad_records) == (len(good), len(bad_stamps))
    assert all("timestamp" in sample for sample in result.bad_samples)
    assert load_log(out, "AB").frame.height == len(good)
