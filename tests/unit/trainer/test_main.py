"""``drain``: what the trainer reads from the examples topic between rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from botify.example_log import ExampleLog  # noqa: E402
from botify.training import TrainingExample  # noqa: E402
from services.trainer.__main__ import drain  # noqa: E402


def example(offset: int) -> TrainingExample:
    return TrainingExample(1000 + offset, 1, 2, 3, 4, 0.5, 0, offset)


class FakeConsumer:
    """Hands out ``batches`` in order, then empty polls; records each poll's arguments."""

    def __init__(self, batches: list[list[TrainingExample]]) -> None:
        self.batches = batches
        self.polls: list[tuple[int, float]] = []

    def poll_batch(self, max_records: int, timeout_s: float) -> list[TrainingExample]:
        self.polls.append((max_records, timeout_s))
        return self.batches.pop(0) if self.batches else []


class EndlessConsumer(FakeConsumer):
    """A topic that never runs dry: every poll is full."""

    def poll_batch(self, max_records: int, timeout_s: float) -> list[TrainingExample]:
        start = len(self.polls) * max_records
        self.polls.append((max_records, timeout_s))
        return [example(start + i) for i in range(max_records)]


@pytest.fixture
def log(tmp_path: Path) -> ExampleLog:
    return ExampleLog(tmp_path, max_rows_per_part=1000, max_parts=10)


def test_drain_reads_full_polls_and_stops_at_the_first_short_one(log: ExampleLog) -> None:
    batches = [[example(i) for i in range(s, s + 3)] for s in (0, 3)] + [[example(6)]]
    batches.append([example(7)])  # after the short poll: left for the next drain
    consumer = FakeConsumer(batches)
    assert drain(consumer, log, records=3, wait_s=0.2) == 7  # type: ignore[arg-type]
    assert consumer.polls == [(3, 0.2)] * 3
    assert log.buffered() == 7


def test_drain_of_an_empty_topic_polls_once(log: ExampleLog) -> None:
    consumer = FakeConsumer([])
    assert drain(consumer, log, records=5, wait_s=0.1) == 0  # type: ignore[arg-type]
    assert len(consumer.polls) == 1


def test_drain_is_bounded_at_a_hundred_polls_when_the_topic_never_runs_dry(
    log: ExampleLog,
) -> None:
    consumer = EndlessConsumer([])
    assert drain(consumer, log, records=2, wait_s=0.0) == 200  # type: ignore[arg-type]
    assert len(consumer.polls) == 100


def test_drain_counts_only_the_examples_the_log_took(log: ExampleLog) -> None:
    log.append([example(0), example(1)])  # already in the log: a republished pair
    full = [example(0), example(1), example(2)]
    consumer = FakeConsumer([full, [example(2), example(3)]])
    assert drain(consumer, log, records=3, wait_s=0.1) == 2  # type: ignore[arg-type]
    # The full poll (duplicates and all) did not end the drain; the short one did.
    assert len(consumer.polls) == 2
    assert log.duplicates == 3
    assert log.window()["offset"].to_list() == [0, 1, 2, 3]
