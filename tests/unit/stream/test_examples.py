"""The stream processor turns listens into training examples and delivers them before it
commits the state that made them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
import pytest

from botify import keys
from botify.events import encode_listen_event
from botify.state import StateConfig
from botify.storage import InMemoryUserStateStore
from botify.training import TrainingExample, decode_example, encode_example
from services.stream import agents
from services.stream.agents import ListenProcessor, Record, Retry
from services.stream.app import _ExampleTopic
from tests.factories import listen

FAST = Retry(first=0.001, cap=0.002)


@dataclass
class RecordingDeadLetters:
    sent: list[bytes | None] = field(default_factory=list)

    async def send_many(self, records):  # type: ignore[no-untyped-def]
        self.sent += [value for _, value, _ in records]
        return [None] * len(records)


@dataclass
class RecordingSink:
    """Records each publish with the states committed at that moment."""

    store: InMemoryUserStateStore
    published: list[TrainingExample] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    calls: int = 0
    failures: int = 0
    listens_when_published: list[int] = field(default_factory=list)

    pending: list[tuple[bytes, bytes]] = field(default_factory=list)

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self.pending += records

    async def flush(self) -> None:
        self.calls += 1
        records, self.pending = self.pending, []  # a failed flush drops what it had
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker is away")
        self.listens_when_published.append((await self.store.load(1)).listens)
        for key, value in records:
            self.keys.append(key)
            self.published.append(decode_example(value))


def record(value: bytes, offset: int, key: bytes = b"1", partition: int = 2) -> Record:
    return Record("botify.listens.v1", partition, offset, key, value)


def session(user: int = 1) -> list[bytes]:
    """A start, two listens and a last: three examples."""
    events = [
        listen(user=user, track=10, recommendation=11),
        listen(user=user, track=11, recommendation=12, time=0.5),
        listen(user=user, track=12, recommendation=13, time=0.25),
        listen(user=user, track=13, message="last", time=0.75),
    ]
    return [encode_listen_event(e) for e in events]


def processor(sink: RecordingSink | None = None) -> tuple[ListenProcessor, InMemoryUserStateStore]:
    store = sink.store if sink is not None else InMemoryUserStateStore()
    proc = ListenProcessor(store, RecordingDeadLetters(), StateConfig(), FAST, examples=sink)
    return proc, store


async def test_a_batch_publishes_its_examples_keyed_by_user_before_committing_state() -> None:
    sink = RecordingSink(InMemoryUserStateStore())
    proc, store = processor(sink)
    batch = [record(v, i) for i, v in enumerate(session())]
    assert await proc.handle_batch(batch) == ["applied"] * 4
    assert [(e.context, e.track, e.time) for e in sink.published] == [
        (10, 11, 0.5),
        (11, 12, 0.25),
        (12, 13, 0.75),
    ]
    assert {e.session_start for e in sink.published} == {10}
    assert [(e.partition, e.offset) for e in sink.published] == [(2, 1), (2, 2), (2, 3)]
    assert sink.keys == [b"1"] * 3
    assert sink.calls == 1 and sink.listens_when_published == [0]
    assert (await store.load(1)).listens == 4


async def test_a_redelivered_batch_publishes_no_examples() -> None:
    sink = RecordingSink(InMemoryUserStateStore())
    proc, _ = processor(sink)
    batch = [record(v, i) for i, v in enumerate(session())]
    await proc.handle_batch(batch)
    assert await proc.handle_batch(batch) == ["duplicate"] * 4
    assert len(sink.published) == 3 and sink.calls == 1


async def test_a_failing_examples_topic_is_retried_and_holds_back_the_commit() -> None:
    sink = RecordingSink(InMemoryUserStateStore(), failures=3)
    proc, store = processor(sink)
    batch = [record(v, i) for i, v in enumerate(session())]
    assert await proc.handle_batch(batch) == ["applied"] * 4
    assert sink.calls == 4 and len(sink.published) == 3
    # The state was still uncommitted when the examples finally went out.
    assert sink.listens_when_published == [0]
    assert await store.counter(keys.STREAM_APPLIED) == 4


async def test_an_example_that_fails_validation_is_counted_and_its_listen_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def encode(example):  # type: ignore[no-untyped-def]
        if example.track == 11:
            raise ValueError("fails its schema")
        return encode_example(example)

    monkeypatch.setattr(agents, "encode_example", encode)
    sink = RecordingSink(InMemoryUserStateStore())
    proc, store = processor(sink)
    start = encode_listen_event(listen(user=1, track=10, recommendation=11))
    then = encode_listen_event(listen(user=1, track=11))
    outcomes = await proc.handle_batch([record(start, 0), record(then, 1)])
    assert outcomes == ["applied", "applied"]
    assert sink.published == []
    assert proc.dead_letters.sent == []  # type: ignore[attr-defined]
    assert await store.counter(keys.STREAM_EXAMPLES_SKIPPED) == 1
    assert (await store.load(1)).listens == 2


async def test_a_listen_past_the_timestamp_maximum_is_dead_lettered_and_makes_no_example() -> None:
    sink = RecordingSink(InMemoryUserStateStore())
    proc, store = processor(sink)
    start = encode_listen_event(listen(user=1, track=10, recommendation=11))
    huge = orjson.loads(encode_listen_event(listen(user=1, track=11)))
    huge["timestamp"] = 2**63
    outcomes = await proc.handle_batch([record(start, 0), record(orjson.dumps(huge), 1)])
    assert outcomes == ["applied", "dead_letter"]
    assert sink.published == [] and (await store.load(1)).listens == 1


async def test_without_a_sink_the_fold_is_unchanged() -> None:
    proc, store = processor(None)
    batch = [record(v, i) for i, v in enumerate(session())]
    assert await proc.handle_batch(batch) == ["applied"] * 4
    assert (await store.load(1)).history == (10, 11, 12, 13)


class RecordingProducer:
    """A DeliveringProducer that records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def send(self, topic, records, headers=None):  # type: ignore[no-untyped-def]
        self.calls.append((topic, list(records)))

    def send_batch(self, topic, records):  # type: ignore[no-untyped-def]
        self.calls.append((topic, list(records)))

    def flush(self) -> None:
        self.calls.append("flush")


async def test_example_topic_sends_a_batch_in_one_call_and_flushes_on_demand() -> None:
    producer = RecordingProducer()
    records = [(b"1", b"a"), (b"2", b"b"), (b"1", b"c")]
    topic = _ExampleTopic(producer, "examples")  # type: ignore[arg-type]
    topic.send(records)
    assert producer.calls == [("examples", records)]
    await topic.flush()
    assert producer.calls == [("examples", records), "flush"]


@dataclass
class OrderCheckingSink:
    """At each flush, checks that no example's user has its state committed yet."""

    store: InMemoryUserStateStore
    pending: list[tuple[bytes, bytes]] = field(default_factory=list)
    flushed: list[list[int]] = field(default_factory=list)

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self.pending += records

    async def flush(self) -> None:
        users = sorted({decode_example(v).user for _, v in self.pending})
        for user in users:
            assert (await self.store.load(user)).listens == 0, f"user {user} committed first"
        self.flushed.append(users)
        self.pending = []


async def test_chunked_users_each_have_their_examples_delivered_before_their_commit() -> None:
    store = InMemoryUserStateStore()
    sink = OrderCheckingSink(store)
    proc = ListenProcessor(
        store, RecordingDeadLetters(), StateConfig(), FAST, examples=sink, chunk_users=2
    )
    sessions = [session(user) for user in (1, 2, 3, 4, 5)]
    # Interleaved, as a partition carries them; keyed by user.
    batch = [
        record(s[i], 10 * i + u, key=str(u + 1).encode())
        for i in range(4)
        for u, s in enumerate(sessions)
    ]
    assert await proc.handle_batch(batch) == ["applied"] * 20
    assert sink.flushed == [[1, 2], [3, 4], [5]]
    assert [(await store.load(u)).listens for u in (1, 2, 3, 4, 5)] == [4] * 5
