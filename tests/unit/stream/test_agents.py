from __future__ import annotations

from dataclasses import dataclass, field

from botify import keys
from botify.events import encode_listen_event
from botify.state import StateConfig
from botify.storage import InMemoryUserStateStore
from services.stream.agents import ListenProcessor, Record
from tests.factories import listen


@dataclass
class RecordingTopic:
    sent: list[dict] = field(default_factory=list)  # type: ignore[type-arg]

    async def send(self, *, key, value, headers):  # type: ignore[no-untyped-def]
        self.sent.append({"key": key, "value": value, "headers": dict(headers)})


def record(value: bytes | None, offset: int, key: bytes | None = b"1") -> Record:
    return Record("botify.listens.v1", 2, offset, key, value)


async def test_valid_record_is_applied_once_and_a_redelivery_is_a_duplicate() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig())
    raw = encode_listen_event(listen(user=1, track=5))
    assert await proc.handle(record(raw, 0)) == "applied"
    assert await proc.handle(record(raw, 0)) == "duplicate"
    assert (await store.load(1)).listens == 1
    assert await store.counter(keys.STREAM_APPLIED) == 1
    assert await store.counter(keys.STREAM_DUPLICATES) == 1
    assert dlq.sent == []


async def test_bad_records_go_to_the_dead_letter_topic_with_reason_and_source() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig())
    bad = [b"{nope", b'{"message": "next"}', None, encode_listen_event(listen(user=2))]
    outcomes = [await proc.handle(record(v, i)) for i, v in enumerate(bad)]
    assert outcomes == ["dead_letter"] * 4  # the last one's key (b"1") is not its user (2)
    assert await store.counter(keys.STREAM_DEAD_LETTERS) == 4
    assert [m["value"] for m in dlq.sent] == bad
    first = dlq.sent[0]["headers"]
    assert first["botify-source-topic"] == b"botify.listens.v1"
    assert first["botify-source-partition"] == b"2" and first["botify-source-offset"] == b"0"
    assert first["botify-error"]
    assert b"user id" in dlq.sent[3]["headers"]["botify-error"]
