from __future__ import annotations

import gc
from collections import deque

import pytest
from confluent_kafka import TopicPartition

from botify.errors import BackendUnavailableError
from botify.settings import KafkaSettings, Settings
from botify.state import StateConfig
from botify.storage import InMemoryUserStateStore
from services.stream import app
from services.stream.agents import ListenProcessor, Record, Retry
from services.stream.app import batch_offsets


def test_the_offsets_stored_after_a_batch_are_one_past_each_partitions_last_record() -> None:
    records = [Record("t", p, o, None, b"") for p, o in ((0, 5), (1, 7), (0, 6), (1, 9))]
    offsets, _ = batch_offsets(records, {})
    stored = {(tp.topic, tp.partition): tp.offset for tp in offsets}
    assert stored == {("t", 0): 7, ("t", 1): 10}
    assert all(isinstance(tp, TopicPartition) for tp in offsets)


def test_offsets_going_back_are_noticed_within_a_batch_and_against_the_last_one() -> None:
    def batch(*coords: tuple[int, int]) -> list[Record]:
        return [Record("t", p, o, None, b"") for p, o in coords]

    def went_back(records: list[Record], next_offset: dict[int, int]) -> bool:
        return batch_offsets(records, next_offset)[1]

    assert not went_back(batch((0, 5), (1, 2), (0, 6)), {0: 5, 1: 0})
    assert went_back(batch((0, 5), (0, 0)), {})  # a broker that starts again at 0
    assert went_back(batch((1, 3)), {1: 10})  # a replay from the committed offset
    assert not went_back(batch((2, 0)), {1: 10})  # a partition not seen before


async def test_an_unknown_topic_identity_is_looked_up_again_after_a_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers: list[str | Exception] = [BackendUnavailableError("broker away")] * 2 + ["lifetime-2"]

    def identity(settings: KafkaSettings, topic: str, service: str) -> str:
        assert service == "stream"
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(app, "topic_identity", identity)
    worker = object.__new__(app.StreamWorker)
    worker._settings = Settings()
    worker._heartbeat = None
    worker._identity_known = False
    worker.processor = ListenProcessor(
        InMemoryUserStateStore(), None, StateConfig(), Retry(0.001, 2.0, 0.002), source="lifetime-1"
    )  # type: ignore[arg-type]
    await worker._learn_identity()
    assert worker.processor.source == "lifetime-2" and worker._identity_known and not answers


class FinishingProcessor:
    """What ``_finish_and_learn_identity`` needs of a ``ListenProcessor``: one batch in
    flight, finished."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.finished = 0
        self.retry = Retry(0.001, 2.0, 0.002)

    async def finish(self) -> list[list[str]]:
        self.finished += 1
        return [["k"]]


class OffsetStore:
    def __init__(self) -> None:
        self.stored: list[list[TopicPartition]] = []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.stored.append(offsets)


@pytest.mark.parametrize(("now", "stored"), [("lifetime-1", True), ("lifetime-2", False)])
async def test_a_batch_in_flight_when_the_topic_changes_lifetime_stores_no_offsets(
    monkeypatch: pytest.MonkeyPatch, now: str, stored: bool
) -> None:
    monkeypatch.setattr(app, "topic_identity", lambda settings, topic, service: now)
    worker = object.__new__(app.StreamWorker)
    worker._settings = Settings()
    worker._heartbeat = None
    worker._identity_known = True
    processor = FinishingProcessor("lifetime-1")
    worker.processor = processor  # type: ignore[assignment]
    consumer = OffsetStore()
    worker._consumer = consumer  # type: ignore[assignment]
    old_lifetime = [TopicPartition("t", 0, 5000)]
    in_flight = deque([old_lifetime])
    await worker._finish_and_learn_identity(in_flight)
    assert processor.finished == 1  # its state writes are done either way
    assert not in_flight and processor.source == now
    assert consumer.stored == ([old_lifetime] if stored else [])


def test_the_worker_tunes_the_collector_to_its_young_threshold_and_freezes_start_up() -> None:
    before = gc.get_threshold()
    try:
        app.tune_collector(12_345)
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0  # what start-up made is out of the collector's way
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
