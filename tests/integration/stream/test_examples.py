"""Training examples from a real stream worker, read back with ``ExampleConsumer``: every
listen that continues a session makes exactly one example, with its session's start and the
track listened before it; a replay of the whole topic makes none."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from botify import keys
from botify.events import ListenEvent
from botify.example_log import ExampleConsumer
from botify.kafka import ListenPublisher, ensure_topics
from botify.settings import KafkaSettings
from botify.state import Position, StateConfig, UserState, apply_listen
from botify.training import TrainingExample, encode_example
from tests.factories import listen
from tests.integration.stream.harness import (
    Worker,
    counter,
    own_db,
    produce,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.slow

USERS = range(6)
SESSIONS = 2
NEXTS = 4  # per session after its start, then a last: NEXTS + 1 examples per session


@pytest.fixture(scope="module")
def kafka(broker_url: str) -> KafkaSettings:
    name = f"botify.test.{uuid.uuid4().hex[:12]}"
    settings = KafkaSettings(
        bootstrap_servers=broker_url,
        listens_topic=f"{name}.v1",
        examples_topic=f"{name}.examples.v1",
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def store_url(redis_url: str) -> str:
    return own_db(redis_url, 9)


def worker(kafka: KafkaSettings, store_url: str, log: Path) -> Worker:
    env = {"BOTIFY_KAFKA__EXAMPLES_TOPIC": kafka.examples_topic}
    group = f"test-{uuid.uuid4().hex[:8]}"
    return Worker(kafka.bootstrap_servers, store_url, kafka.listens_topic, group, log, env)


def sessions() -> list[ListenEvent]:
    """Each user's sessions: a start (track s), NEXTS listens of the served tracks, a last."""
    events = []
    for user in USERS:
        for s in range(SESSIONS):
            track = 1000 * user + 100 * s
            for i in range(NEXTS + 1):
                rec = track + 1
                events.append(listen(user=user, track=track, recommendation=rec, time=i / 8))
                track = rec
            events.append(listen(user=user, track=track, message="last", time=0.9))
    return events


def expected_by_hand(events: list[ListenEvent]) -> set[tuple[int, int, int, int, float]]:
    """(user, session_start, context, track, time) of every listen after a session's start,
    from the protocol alone (not apply_listen)."""
    out = set()
    previous: dict[int, ListenEvent | None] = {}
    start: dict[int, int] = {}
    for e in events:
        before = previous.get(e.user)
        if before is None:
            start[e.user] = e.track
        else:
            out.add((e.user, start[e.user], before.track, e.track, e.time))
        previous[e.user] = None if e.message == "last" else e
    return out


def consume(
    kafka: KafkaSettings, consumer: ExampleConsumer, expected: int, timeout: float = 60
) -> list[TrainingExample]:
    """Every example of the topic: at least ``expected`` distinct ones, then until nothing new
    arrives for a second (Tansu's watermarks cannot tell the end)."""
    out: list[TrainingExample] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        batch = consumer.poll_batch(500, 0.2)
        out.extend(batch)
        if batch:
            last_new = time.monotonic()
        elif len({e.key for e in out}) >= expected and time.monotonic() - last_new > 1.0:
            break
    assert len({e.key for e in out}) >= expected, f"read {len(out)} of {expected} examples"
    return out


async def test_a_worker_publishes_one_example_per_continued_listen_and_a_replay_none(
    kafka: KafkaSettings, store_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    events = sessions()
    by_hand = expected_by_hand(events)
    assert len(by_hand) == len(USERS) * SESSIONS * (NEXTS + 1)
    first = worker(kafka, store_url, tmp_path / "worker.log")
    try:
        first.start().wait_ready()
        produce(kafka, events)
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) == len(events), 60, "the fold")
    finally:
        assert first.stop() == 0, first.text()[-3000:]

    # The exact examples, source positions included: apply_listen over the broker's order.
    config = StateConfig()
    states: dict[int, UserState] = {}
    folded = set()
    for msg in read_topic(kafka.bootstrap_servers, kafka.listens_topic, len(events)):
        e = ListenEvent.model_validate_json(msg.value())
        t = apply_listen(
            states.get(e.user, UserState(e.user)),
            e,
            Position(msg.partition(), msg.offset()),
            config,
        )
        states[e.user] = t.state
        if t.example is not None:
            folded.add(t.example)

    with ExampleConsumer(kafka, f"trainer-{uuid.uuid4().hex[:8]}") as consumer:
        got = consume(kafka, consumer, len(by_hand))
        assert consumer.bad_records == 0
        assert set(got) == folded
        assert {(e.user, e.session_start, e.context, e.track, e.time) for e in got} == by_hand
        assert len(got) == len(by_hand)  # no failure, so no republished duplicate either
        consumer.commit()

        # A new group folds the whole topic again: every event is a duplicate, no example.
        replay = worker(kafka, store_url, tmp_path / "replay.log")
        duplicates = counter(r, keys.STREAM_DUPLICATES)
        try:
            replay.start().wait_ready()
            wait_for(
                lambda: counter(r, keys.STREAM_DUPLICATES) - duplicates == len(events),
                60,
                "the replay",
            )
        finally:
            assert replay.stop() == 0, replay.text()[-3000:]
        assert consumer.poll_batch(500, 2.0) == []


def test_consumer_counts_and_skips_undecodable_records(
    kafka: KafkaSettings, unique_topic: str
) -> None:
    settings = kafka.model_copy(update={"examples_topic": unique_topic})
    ensure_topics(settings)
    good = TrainingExample(1, 2, 3, 4, 5, 0.5, 0, 7)
    publisher = ListenPublisher(settings, "test")
    try:
        publisher.publish_raw(unique_topic, b"2", b"\xc1 not msgpack")
        publisher.publish_raw(unique_topic, b"2", encode_example(good))
        assert publisher.flush(10) == 0
    finally:
        publisher.close()
    with ExampleConsumer(settings, f"trainer-{uuid.uuid4().hex[:8]}") as consumer:
        got = consume(settings, consumer, 1, timeout=30)
        assert got == [good] and consumer.bad_records == 1
