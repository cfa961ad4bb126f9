"""The export's file writers: a row its column types cannot hold is skipped, never fatal."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from botify.events import ListenEvent
from botify.listen_export import _JsonlSink, _ParquetSink, _write_or_skip
from tests.factories import listen


def unwritable() -> ListenEvent:
    # Past what the decoder accepts: only a bug upstream could bring one here.
    return listen().model_copy(update={"timestamp": 2**64})


def test_parquet_writer_skips_a_row_int64_cannot_hold_and_writes_the_rest(tmp_path: Path) -> None:
    sink = _ParquetSink(tmp_path / "x.parquet")
    events = [listen(user=1), unwritable(), listen(user=2)]
    skipped = _write_or_skip(sink, events)
    sink.close()
    assert [i for i, _ in skipped] == [1]
    assert pq.read_table(tmp_path / "x.parquet").column("user").to_pylist() == [1, 2]


def test_jsonl_writer_skips_a_row_json_cannot_hold_and_writes_the_rest(tmp_path: Path) -> None:
    sink = _JsonlSink(tmp_path / "x.jsonl")
    skipped = _write_or_skip(sink, [listen(user=1), unwritable(), listen(user=2)])
    sink.close()
    assert [i for i, _ in skipped] == [1]
    assert len((tmp_path / "x.jsonl").read_text().splitlines()) == 2
