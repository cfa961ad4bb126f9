"""``drain`` and ``ExampleFeed``: what the trainer reads from the examples topic between
rounds, and when it commits what it read."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from botify.errors import ConfigError  # noqa: E402
from botify.example_log import ExampleLog  # noqa: E402
from botify.models import MODELS, LearnedModel  # noqa: E402
from botify.settings import Settings, TrainerSettings  # noqa: E402
from botify.training import TrainingExample  # noqa: E402
from services.trainer.__main__ import ExampleFeed, check_models, drain, main  # noqa: E402
from tests.unit.trainer.conftest import fast_settings  # noqa: E402


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


class CommittingConsumer(FakeConsumer):
    """Records, at each commit, how many examples the log had on disk and in its buffer."""

    def __init__(self, batches: list[list[TrainingExample]], log: ExampleLog) -> None:
        super().__init__(batches)
        self.log = log
        self.commits: list[tuple[int, int]] = []

    def commit(self) -> None:
        self.commits.append((len(self.log.window()) - self.log.buffered(), self.log.buffered()))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed_of(
    batches: list[list[TrainingExample]], log: ExampleLog, **cfg: object
) -> tuple[ExampleFeed, CommittingConsumer, Clock]:
    consumer, clock = CommittingConsumer(batches, log), Clock()
    settings = fast_settings(poll_records=100, **cfg)
    return ExampleFeed(consumer, log, settings, clock), consumer, clock  # type: ignore[arg-type]


def test_a_round_is_due_after_every_s_with_new_examples_or_after_every_examples(
    log: ExampleLog,
) -> None:
    batches = [[example(0)], [], [example(1)], [example(i) for i in range(2, 8)]]
    feed, _, clock = feed_of(batches, log, every_s=10.0, every_examples=5)
    assert not feed.poll()  # one new example, too soon
    clock.now = 11.0
    assert feed.poll()  # nothing new in this poll, but one since the last round
    assert not feed.poll()  # one more, too soon
    assert feed.poll()  # six more: enough without waiting
    clock.now = 30.0
    assert not feed.poll()  # time enough, but nothing new


def test_the_consumer_commits_only_what_the_log_has_flushed(log: ExampleLog) -> None:
    batches = [[example(i) for i in range(s, s + 3)] for s in range(0, 30, 3)]
    feed, consumer, clock = feed_of(batches, log, every_s=1.0, flush_rows=5, flush_s=100.0)
    rounds = []
    for step in range(10):
        clock.now = 2.0 * (step + 1)
        rounds.append(feed.poll())
    assert all(rounds)
    # A flush (and its commit) once at least 5 examples are buffered: every second round.
    assert consumer.commits == [(6, 0), (12, 0), (18, 0), (24, 0), (30, 0)]
    assert log.buffered() == 0


def test_a_quiet_topic_is_still_committed_after_flush_s(log: ExampleLog) -> None:
    feed, consumer, clock = feed_of(
        [[example(0)], [example(1)]], log, every_s=1.0, flush_rows=1000, flush_s=60.0
    )
    clock.now = 2.0
    assert feed.poll() and consumer.commits == []  # one buffered example: not worth a part
    clock.now = 70.0
    assert feed.poll() and consumer.commits == [(2, 0)]


def test_the_trainer_refuses_to_start_with_a_model_nobody_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOTIFY_TRAINER__MODELS", '["affinty"]')
    with pytest.raises(SystemExit) as info:
        main()
    message = info.value.code
    assert isinstance(message, str), message
    assert message.startswith("botify trainer: unknown model 'affinty'; known: affinity")
    assert "\n" not in message


def test_the_trainer_refuses_to_start_with_a_torch_half_that_does_not_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(MODELS, "broken", LearnedModel("broken", "tests.no_such_net:Net"))
    monkeypatch.setenv("BOTIFY_TRAINER__MODELS", '["affinity", "broken"]')
    with pytest.raises(ConfigError) as info:
        check_models(Settings())
    assert str(info.value) == (
        "model 'broken': cannot load 'tests.no_such_net:Net': "
        "ModuleNotFoundError: No module named 'tests.no_such_net'"
    )
    assert check_models(Settings(trainer=TrainerSettings(models=("dae",)))) == ("dae",)
