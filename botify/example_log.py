"""The trainer's bounded on-disk log of training examples, and the consumer that feeds it.

``ExampleLog`` appends examples to a directory of Parquet parts, ``part-<seq>.parquet`` with
a sequence number that only grows. A part is written under a hidden temporary name and
renamed into place, so a reader never sees half of one; beyond ``max_parts`` the oldest
parts are deleted, which bounds the disk. The stream publishes at least once, so an example
may arrive twice: the log drops the keys (source partition, offset, timestamp) it saw
recently, and ``window`` drops any duplicate left. One process writes a directory; any may
read it.

``ExampleConsumer`` reads the examples topic in a consumer group. It commits offsets only
when asked: the trainer commits after the log has flushed what was polled, so a crash
re-reads (and the log drops) rather than loses examples.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import polars as pl
import pyarrow.parquet as pq
from confluent_kafka import KafkaError, KafkaException

from botify.errors import BackendUnavailableError, InvalidEventError
from botify.files import fsync_dir
from botify.kafka import TRAINER, build_consumer
from botify.settings import KafkaSettings, TrainingDataSettings
from botify.training import TrainingExample, decode_example, example_schema, examples_frame

logger = logging.getLogger(__name__)

_PART = re.compile(r"^part-(\d+)\.parquet$")
_TEMP_PREFIX = ".part-"
_KEY = ["partition", "offset", "timestamp"]
_ORDER = ["timestamp", "partition", "offset"]


class ExampleLog:
    """An append-only, bounded Parquet log of training examples in ``directory``."""

    def __init__(
        self,
        directory: Path,
        max_rows_per_part: int,
        max_parts: int,
        recent_keys: int = 200_000,
    ) -> None:
        if max_rows_per_part < 1 or max_parts < 1 or recent_keys < 0:
            raise ValueError(
                "ExampleLog needs max_rows_per_part >= 1, max_parts >= 1 and recent_keys >= 0"
            )
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_rows_per_part = max_rows_per_part
        self.max_parts = max_parts
        self.duplicates = 0  # examples dropped on append as already seen
        self.unreadable_parts = 0  # parts window() skipped because they could not be read
        self._recent_limit = recent_keys
        self._recent: deque[tuple[int, int, int]] = deque()
        self._recent_set: set[tuple[int, int, int]] = set()
        self._buffer: list[TrainingExample] = []
        self._ranges: dict[Path, tuple[int, int] | None] = {}
        self._rows: dict[Path, int] = {}
        self._lock = threading.Lock()
        self._writing = False

    @classmethod
    def from_settings(cls, settings: TrainingDataSettings, run_dir: Path) -> ExampleLog:
        return cls(
            settings.path(run_dir),
            settings.max_rows_per_part,
            settings.max_parts,
            settings.recent_keys,
        )

    def append(self, examples: Iterable[TrainingExample]) -> int:
        """Buffer the examples not seen recently, writing a part each time the buffer holds
        ``max_rows_per_part``; returns how many were taken (the rest were duplicates)."""
        taken = 0
        with self._lock:
            self._start_writing()
            for example in examples:
                key = example.key
                if key in self._recent_set:
                    self.duplicates += 1
                    continue
                self._remember(key)
                self._buffer.append(example)
                taken += 1
                if len(self._buffer) >= self.max_rows_per_part:
                    self._write_part()
        return taken

    def flush(self) -> Path | None:
        """Write the buffered examples as a part; returns its path (None if nothing was
        buffered)."""
        with self._lock:
            self._start_writing()
            return self._write_part() if self._buffer else None

    def buffered(self) -> int:
        return len(self._buffer)

    def stored(self) -> tuple[int, int]:
        """Rows and bytes of the parts on disk (the buffer not included)."""
        rows = size = 0
        for path in self.parts():
            try:
                size += path.stat().st_size
                if path not in self._rows:
                    self._rows[path] = int(pl.scan_parquet(path).select(pl.len()).collect().item())
            except (OSError, pl.exceptions.PolarsError):  # pruned meanwhile, or unreadable
                continue
            rows += self._rows[path]
        for gone in set(self._rows) - set(self.parts()):
            del self._rows[gone]
        return rows, size

    def parts(self) -> list[Path]:
        """The complete parts on disk, oldest first."""
        found = []
        for path in self.directory.iterdir():
            match = _PART.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def window(self, since_ms: int | None = None, max_rows: int | None = None) -> pl.DataFrame:
        """The newest examples (of timestamp >= ``since_ms``, at most ``max_rows``) across the
        parts and the buffer, each once, in timestamp order (then partition, offset)."""
        if max_rows is not None and max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, got {max_rows}")
        with self._lock:
            parts = self.parts()
            frames = [_since(examples_frame(self._buffer), since_ms)]
        # Newest first, skipping parts wholly older than since_ms by their statistics.
        newest = []
        for path in reversed(parts):
            span = self._range(path)
            if span is not None and (since_ms is None or span[1] >= since_ms):
                newest.append((path, span[1]))
        older_max = _suffix_max([high for _, high in newest])
        for i, (path, _) in enumerate(newest):
            if max_rows is not None and _covered(frames, max_rows, older_max[i]):
                break
            frame = self._read(path)
            if frame is not None:
                frames.append(_since(frame, since_ms))
        out = pl.concat(frames, how="vertical")
        out = out.unique(subset=_KEY, keep="first").sort(_ORDER)
        return out if max_rows is None else out.tail(max_rows)

    # -- writing (under the lock) ---------------------------------------------------------

    def _start_writing(self) -> None:
        """Once, when this log starts writing: clear a crashed writer's temporary files and
        remember the keys of the newest parts, so a restart still drops republished
        examples."""
        if self._writing:
            return
        self._writing = True
        for path in self.directory.glob(f"{_TEMP_PREFIX}*"):
            logger.warning("removing %s, left by an interrupted write", path)
            path.unlink(missing_ok=True)
        keys: list[tuple[int, int, int]] = []
        for path in reversed(self.parts()):
            if len(keys) >= self._recent_limit:
                break
            frame = self._read(path, columns=_KEY)
            if frame is not None:
                keys.extend(zip(*frame.reverse().get_columns(), strict=True))
        for key in reversed(keys[: self._recent_limit]):
            self._remember(key)

    def _remember(self, key: tuple[int, int, int]) -> None:
        if self._recent_limit == 0 or key in self._recent_set:
            return
        self._recent.append(key)
        self._recent_set.add(key)
        if len(self._recent) > self._recent_limit:
            self._recent_set.discard(self._recent.popleft())

    def _write_part(self) -> Path:
        rows, self._buffer = (
            self._buffer[: self.max_rows_per_part],
            self._buffer[self.max_rows_per_part :],
        )
        frame = examples_frame(rows)
        existing = self.parts()
        seq = _seq(existing[-1]) + 1 if existing else 0
        final = self.directory / f"part-{seq:012d}.parquet"
        temp = self.directory / f"{_TEMP_PREFIX}{seq:012d}.parquet.tmp"
        try:
            with temp.open("wb") as out:
                frame.write_parquet(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
            # The rename itself must reach the disk: the trainer commits the topic's
            # offsets past these rows right after.
            fsync_dir(self.directory)
        except BaseException:
            # Nothing is lost: the rows go back to the buffer for the next attempt.
            self._buffer = rows + self._buffer
            temp.unlink(missing_ok=True)
            raise
        stamps = frame["timestamp"].to_list()
        self._ranges[final] = (min(stamps), max(stamps))
        for old in [*existing, final][: -self.max_parts]:
            old.unlink(missing_ok=True)
            self._ranges.pop(old, None)
        return final

    # -- reading --------------------------------------------------------------------------

    def _range(self, path: Path) -> tuple[int, int] | None:
        """(min, max) timestamp of a part from its Parquet statistics; None if it is gone,
        empty or unreadable."""
        if path in self._ranges:
            return self._ranges[path]
        try:
            meta = pq.read_metadata(path)
            column = meta.schema.names.index("timestamp")
            stats = [
                meta.row_group(g).column(column).statistics for g in range(meta.num_row_groups)
            ]
            bounds = [
                (s.min, s.max)
                for s in stats
                if s is not None
                and s.has_min_max
                and isinstance(s.min, int)
                and isinstance(s.max, int)
            ]
            if len(bounds) < len(stats) or not stats:
                span = None if meta.num_rows == 0 else (-(2**63), 2**63 - 1)
            else:
                span = (min(lo for lo, _ in bounds), max(hi for _, hi in bounds))
        except FileNotFoundError:
            return None  # deleted by the writer since it was listed: no longer in the log
        except Exception as exc:  # a damaged or foreign file must not stop training
            self._unreadable(path, exc)
            return None
        self._ranges[path] = span
        return span

    def _read(self, path: Path, columns: list[str] | None = None) -> pl.DataFrame | None:
        try:
            frame = pl.read_parquet(path, columns=columns)
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._unreadable(path, exc)
            return None
        if columns is None and frame.schema != example_schema():
            self._unreadable(path, ValueError(f"unexpected columns {frame.schema}"))
            return None
        return frame

    def _unreadable(self, path: Path, exc: BaseException) -> None:
        self.unreadable_parts += 1
        logger.error("skipping unreadable example log part %s: %r", path, exc)


def _seq(part: Path) -> int:
    match = _PART.match(part.name)
    assert match is not None  # parts() lists matching names only
    return int(match.group(1))


def _since(frame: pl.DataFrame, since_ms: int | None) -> pl.DataFrame:
    return frame if since_ms is None else frame.filter(pl.col("timestamp") >= since_ms)


def _suffix_max(values: list[int]) -> list[int | None]:
    """out[i]: the largest of values[i:], None past the end."""
    out: list[int | None] = [None] * len(values)
    best: int | None = None
    for i in range(len(values) - 1, -1, -1):
        best = values[i] if best is None else max(best, values[i])
        out[i] = best
    return out


def _covered(frames: list[pl.DataFrame], max_rows: int, older_max: int | None) -> bool:
    """Whether the frames read so far already hold the newest ``max_rows`` examples: no
    older part can hold an example at or after the oldest of those."""
    if older_max is None:
        return True
    if sum(len(f) for f in frames) < max_rows:
        return False
    if max_rows == 0:
        return True
    unique = pl.concat(frames, how="vertical").unique(subset=_KEY)
    if len(unique) < max_rows:
        return False
    threshold = int(unique["timestamp"].top_k(max_rows).to_numpy().min())
    return older_max < threshold


class ExampleConsumer:
    """A consumer-group reader of the examples topic. Undecodable records are counted in
    ``bad_records`` and logged, never raised; ``commit`` stores the group's position."""

    def __init__(self, settings: KafkaSettings, group_id: str, service: str = TRAINER) -> None:
        self.topic = settings.examples_topic
        self.bad_records = 0
        self.errors = 0  # error events the client reported instead of a record
        self._consumer = build_consumer(settings, service, group_id)
        self._consumer.subscribe([self.topic])

    def poll_batch(self, max_records: int, timeout_s: float) -> list[TrainingExample]:
        """Up to ``max_records`` examples, waiting at most ``timeout_s`` for the first."""
        out: list[TrainingExample] = []
        for msg in self._consumer.consume(num_messages=max_records, timeout=timeout_s):
            if msg.error() is not None:
                self.errors += 1
                logger.error("examples consumer error on %s: %s", self.topic, msg.error())
                continue
            try:
                out.append(decode_example(msg.value()))
            except InvalidEventError as exc:
                self.bad_records += 1
                logger.warning(
                    "skipping undecodable example %s[%d]@%d: %s",
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    exc,
                )
        return out

    def commit(self) -> None:
        """Commit the position after the records polled so far (wait for the broker)."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return  # nothing polled since the last commit
            raise BackendUnavailableError(f"cannot commit examples offsets: {exc}") from None

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> ExampleConsumer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
