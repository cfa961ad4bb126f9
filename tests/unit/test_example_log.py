from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botify.example_log import ExampleLog
from botify.settings import Settings, TrainingDataSettings
from botify.training import TrainingExample, example_schema, examples_frame


def ex(offset: int, timestamp: int | None = None, partition: int = 0) -> TrainingExample:
    return TrainingExample(
        timestamp=1000 + offset if timestamp is None else timestamp,
        user=offset % 3,
        session_start=1,
        context=offset,
        track=offset + 1,
        time=0.5,
        partition=partition,
        offset=offset,
    )


def offsets(frame: pl.DataFrame) -> list[int]:
    return frame["offset"].to_list()


def names(log: ExampleLog) -> list[str]:
    return [p.name for p in log.parts()]


def test_a_part_is_written_each_time_the_buffer_fills_and_flush_writes_the_rest(
    tmp_path: Path,
) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=3, max_parts=10)
    assert log.append(ex(i) for i in range(7)) == 7
    assert names(log) == ["part-000000000000.parquet", "part-000000000001.parquet"]
    assert log.buffered() == 1
    assert log.flush() == tmp_path / "part-000000000002.parquet"
    assert log.flush() is None and log.buffered() == 0
    assert [len(pl.read_parquet(p)) for p in log.parts()] == [3, 3, 1]
    assert pl.read_parquet(log.parts()[0]).schema == example_schema()


def test_window_reads_parts_and_buffer_in_timestamp_order(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10)
    stamps = [50, 10, 40, 30, 20]  # arrival order is not timestamp order
    log.append(ex(i, timestamp=t) for i, t in enumerate(stamps))  # two parts and one buffered
    frame = log.window()
    assert frame["timestamp"].to_list() == sorted(stamps)
    assert frame.schema == example_schema()


def test_window_keeps_the_newest_rows_and_those_since_a_time(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=4, max_parts=10)
    log.append(ex(i) for i in range(10))
    assert offsets(log.window(max_rows=3)) == [7, 8, 9]
    assert offsets(log.window(since_ms=1006)) == [6, 7, 8, 9]
    assert offsets(log.window(since_ms=1002, max_rows=2)) == [8, 9]
    assert log.window(max_rows=0).is_empty()
    assert log.window(since_ms=5000).schema == example_schema()


def test_the_oldest_parts_are_deleted_beyond_max_parts(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=3)
    log.append(ex(i) for i in range(10))  # five parts written, two deleted
    assert names(log) == [f"part-00000000000{i}.parquet" for i in (2, 3, 4)]
    assert offsets(log.window()) == [4, 5, 6, 7, 8, 9]


def test_a_recent_duplicate_is_dropped_on_append(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10)
    log.append([ex(0), ex(1), ex(2)])
    assert log.append([ex(1), ex(2), ex(3), ex(3)]) == 1  # in a part, buffered, in the call
    assert log.duplicates == 3
    assert offsets(log.window()) == [0, 1, 2, 3]


def test_same_offset_on_another_partition_is_not_a_duplicate(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=10, max_parts=10)
    assert log.append([ex(5, partition=0), ex(5, partition=1)]) == 2


def test_a_new_listen_at_an_old_offset_is_kept_after_the_topic_starts_over(
    tmp_path: Path,
) -> None:
    # A broker that lost its data numbers offsets from 0 again: same position, new listen.
    first = ExampleLog(tmp_path, max_rows_per_part=10, max_parts=10)
    first.append(ex(i) for i in range(3))
    first.flush()
    reopened = ExampleLog(tmp_path, max_rows_per_part=10, max_parts=10)
    assert reopened.append(ex(i, timestamp=9000 + i) for i in range(3)) == 3
    assert reopened.append([ex(1, timestamp=9001)]) == 0
    assert offsets(reopened.window()) == [0, 1, 2, 0, 1, 2]


def test_duplicates_older_than_the_remembered_keys_are_dropped_on_read(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10, recent_keys=2)
    log.append(ex(i) for i in range(6))
    assert log.append([ex(0), ex(1)]) == 2  # forgotten: written again
    assert offsets(log.window()) == [0, 1, 2, 3, 4, 5]
    assert len(log.window(max_rows=6)) == 6


def test_a_reopened_log_continues_the_sequence_and_remembers_written_keys(
    tmp_path: Path,
) -> None:
    first = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10)
    first.append(ex(i) for i in range(4))
    again = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10)
    assert again.append([ex(3), ex(4), ex(5)]) == 2  # a replay republished offset 3
    assert names(again)[-1] == "part-000000000002.parquet"
    assert offsets(again.window()) == [0, 1, 2, 3, 4, 5]


def test_a_window_never_sees_a_temporary_file(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=10)
    log.append([ex(0), ex(1)])
    (tmp_path / ".part-000000000001.parquet.tmp").write_bytes(b"PAR1 half a part")
    assert offsets(log.window()) == [0, 1] and log.unreadable_parts == 0


def test_a_failed_write_leaves_no_file_and_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=10, max_parts=10)
    log.append([ex(0), ex(1)])

    def half_written(self, out, *args, **kwargs):  # type: ignore[no-untyped-def]
        out.write(b"PAR1 half")
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_parquet", half_written)
        with pytest.raises(OSError, match="disk full"):
            log.flush()
    assert list(tmp_path.iterdir()) == []
    assert offsets(log.window()) == [0, 1]  # still buffered, nothing lost
    assert log.flush() is not None and offsets(log.window()) == [0, 1]


def test_a_new_writer_removes_a_crashed_writers_temporary_file(tmp_path: Path) -> None:
    stale = tmp_path / ".part-000000000000.parquet.tmp"
    stale.write_bytes(b"half")
    log = ExampleLog(tmp_path, max_rows_per_part=1, max_parts=10)
    log.append([ex(0)])
    assert not stale.exists() and names(log) == ["part-000000000000.parquet"]


def test_an_unreadable_part_is_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=1, max_parts=10)
    log.append([ex(0)])
    (tmp_path / "part-000000000007.parquet").write_bytes(b"not parquet at all")
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "part-000000000008.parquet")
    with caplog.at_level(logging.ERROR):
        assert offsets(log.window()) == [0]
    assert log.unreadable_parts == 2
    assert "part-000000000007.parquet" in caplog.text


def test_a_part_deleted_after_listing_is_no_longer_in_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=1, max_parts=10)
    log.append([ex(0), ex(1)])
    listed = log.parts()
    listed[0].unlink()  # as a writer in another process prunes between list and read
    monkeypatch.setattr(ExampleLog, "parts", lambda self: listed)
    assert offsets(log.window()) == [1] and log.unreadable_parts == 0


def test_bad_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_parts"):
        ExampleLog(tmp_path, max_rows_per_part=1, max_parts=0)
    with pytest.raises(ValueError, match="max_rows"):
        ExampleLog(tmp_path, 1, 1).window(max_rows=-1)


def test_from_settings_puts_a_relative_directory_under_run_dir(tmp_path: Path) -> None:
    log = ExampleLog.from_settings(TrainingDataSettings(max_parts=7), tmp_path)
    assert log.directory == tmp_path / "examples" and log.max_parts == 7
    absolute = TrainingDataSettings(directory=tmp_path / "elsewhere")
    assert absolute.path(Path("runs")) == tmp_path / "elsewhere"


def test_settings_read_the_training_data_section_and_examples_topic_from_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTIFY_TRAINING_DATA__MAX_ROWS_PER_PART", "12")
    monkeypatch.setenv("BOTIFY_KAFKA__EXAMPLES_TOPIC", "x.examples")
    s = Settings()
    assert s.training_data.max_rows_per_part == 12 and s.kafka.examples_topic == "x.examples"
    assert Settings.model_fields["kafka"].default.examples_topic == "botify.examples.v1"


# One source record makes one example: a republished copy is equal, so its timestamp is a
# function of its key (scrambled, so that arrival order is not timestamp order).
examples = st.lists(
    st.builds(
        lambda offset, partition: ex(offset, (7 * offset + 13 * partition) % 31, partition),
        offset=st.integers(0, 40),
        partition=st.integers(0, 1),
    ),
    max_size=60,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(examples, max_size=4),
    rows_per_part=st.integers(1, 7),
    recent=st.sampled_from([0, 3, 1000]),
    since=st.none() | st.integers(0, 30),
    max_rows=st.none() | st.integers(0, 20),
    flush=st.booleans(),
)
def test_window_equals_a_plain_dedupe_sort_and_tail_of_everything_appended(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[TrainingExample]],
    rows_per_part: int,
    recent: int,
    since: int | None,
    max_rows: int | None,
    flush: bool,
) -> None:
    """With unbounded parts, the window is exactly the reference, whatever the arrival
    order, duplicates and part boundaries (the early stop on max_rows included)."""
    log = ExampleLog(
        tmp_path_factory.mktemp("log"), rows_per_part, max_parts=1000, recent_keys=recent
    )
    for batch in batches:
        log.append(batch)
    if flush:
        log.flush()
    first: dict[tuple[int, int], TrainingExample] = {}
    for e in (e for batch in batches for e in batch):
        first.setdefault(e.key, e)
    kept = [e for e in first.values() if since is None or e.timestamp >= since]
    kept.sort(key=lambda e: (e.timestamp, e.partition, e.offset))
    if max_rows is not None:
        kept = kept[max(0, len(kept) - max_rows) :]
    assert log.window(since, max_rows).equals(examples_frame(kept))


def test_stored_counts_the_rows_and_bytes_of_the_parts_left_on_disk(tmp_path: Path) -> None:
    log = ExampleLog(tmp_path, max_rows_per_part=2, max_parts=2)
    assert log.stored() == (0, 0)
    log.append([ex(i) for i in range(7)])  # three parts written, the first pruned; one buffered
    rows, size = log.stored()
    assert rows == 4 and log.buffered() == 1
    assert size == sum(p.stat().st_size for p in log.parts()) > 0
    # A fresh reader of the same directory counts the same.
    assert ExampleLog(tmp_path, max_rows_per_part=2, max_parts=2).stored() == (rows, size)
