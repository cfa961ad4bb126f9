from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import botify.state
from botify import keys
from botify.events import encode_listen_event
from botify.state import Position, StateConfig, UserState, apply_listen, fold_listens
from botify.storage import InMemoryUserStateStore
from services.stream import agents
from services.stream.agents import ListenProcessor, Record, Retry
from tests.factories import listen


@dataclass
class RecordingTopic:
    """A dead-letter topic that takes what it is sent, as a broker with ``max_bytes`` as its
    message size limit would (None: no limit)."""

    sent: list[dict] = field(default_factory=list)  # type: ignore[type-arg]
    max_bytes: int | None = None
    calls: int = 0

    async def send_many(self, records):  # type: ignore[no-untyped-def]
        self.calls += 1
        errors: list[str | None] = []
        for key, value, headers in records:
            size = len(key or b"") + len(value or b"") + sum(len(v) for _, v in headers)
            if self.max_bytes is not None and size > self.max_bytes:
                errors.append("MSG_SIZE_TOO_LARGE")
                continue
            self.sent.append({"key": key, "value": value, "headers": dict(headers)})
            errors.append(None)
        return errors


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
    assert first["botify-error"] and first["botify-dead-letter-version"] == b"1"
    assert first["botify-source-value-size"] == b"5" and first["botify-truncated"] == b""
    assert dlq.sent[2]["headers"]["botify-source-value-size"] == b"-1"  # no value at all
    assert b"user id" in dlq.sent[3]["headers"]["botify-error"]


async def test_a_batch_sends_its_dead_letters_together() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig())
    good = encode_listen_event(listen(user=1, track=7))
    outcomes = await proc.handle_batch([record(b"{", 0), record(good, 1), record(b"[]", 2)])
    assert outcomes == ["dead_letter", "applied", "dead_letter"]
    assert dlq.calls == 1 and len(dlq.sent) == 2


async def test_an_oversized_record_is_dead_lettered_cut_with_its_size_and_coordinates() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), dead_letter_max_bytes=1000)
    poison = b'{"pad":"' + b"a" * 1_010_000 + b'"}'
    assert await proc.handle(record(poison, 7, key=b"77")) == "dead_letter"
    [sent] = dlq.sent
    assert sent["key"] == b"77" and sent["value"] == poison[:1000]
    headers = sent["headers"]
    assert headers["botify-source-value-size"] == str(len(poison)).encode()
    assert headers["botify-truncated"] == b"value"
    assert headers["botify-source-offset"] == b"7" and headers["botify-source-partition"] == b"2"
    assert await store.counter(keys.STREAM_DEAD_LETTERS) == 1


async def test_a_copy_the_broker_refuses_as_too_large_goes_again_without_its_value() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic(max_bytes=500)
    proc = ListenProcessor(store, dlq, StateConfig(), FAST, dead_letter_max_bytes=1000)
    assert await proc.handle(record(b"x" * 5000, 3)) == "dead_letter"
    [sent] = dlq.sent
    assert sent["value"] is None and sent["headers"]["botify-truncated"] == b"value"
    assert b"MSG_SIZE_TOO_LARGE" in sent["headers"]["botify-error"]
    assert dlq.calls == 2


async def test_a_dead_letter_the_broker_keeps_refusing_is_skipped_and_counted_not_retried_forever() -> (
    None
):
    class RefusingTopic(RecordingTopic):
        async def send_many(self, records):  # type: ignore[no-untyped-def]
            self.calls += 1
            return ["INVALID_RECORD"] * len(records)

    store, dlq = InMemoryUserStateStore(), RefusingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), FAST, retry_attempts=4)
    good = encode_listen_event(listen(user=1, track=7))
    assert await proc.handle_batch([record(b"{", 0), record(good, 1)]) == ["skipped", "applied"]
    assert dlq.calls == 4
    assert await store.counter(keys.STREAM_SKIPPED) == 1
    assert await store.counter(keys.STREAM_DEAD_LETTERS) == 0


async def test_a_broker_outage_delays_dead_letters_but_never_skips_them() -> None:
    class AwayThenBack(RecordingTopic):
        async def send_many(self, records):  # type: ignore[no-untyped-def]
            if self.calls < 12:  # longer than retry_attempts: an outage, not a bad record
                self.calls += 1
                raise ConnectionError("broker is away")
            return await super().send_many(records)

    store, dlq = InMemoryUserStateStore(), AwayThenBack()
    proc = ListenProcessor(store, dlq, StateConfig(), FAST, retry_attempts=4)
    assert await proc.handle(record(b"{", 0)) == "dead_letter"
    assert len(dlq.sent) == 1 and dlq.sent[0]["value"] == b"{"
    assert await store.counter(keys.STREAM_SKIPPED) == 0
    assert await store.counter(keys.STREAM_DEAD_LETTERS) == 1


class FlakyStore(InMemoryUserStateStore):
    """Fails its first ``failures`` calls to load_many and commit_users, as Redis would in an
    outage."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("redis is away")

    async def load_many(self, users):  # type: ignore[no-untyped-def]
        self._maybe_fail()
        return await super().load_many(users)

    async def commit_users(self, commits):  # type: ignore[no-untyped-def]
        self._maybe_fail()
        return await super().commit_users(commits)


FAST = Retry(first=0.001, cap=0.002)


async def test_a_failing_store_is_retried_until_the_batch_is_applied() -> None:
    store, dlq = FlakyStore(failures=5), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), FAST)
    batch = [record(encode_listen_event(listen(user=1, track=t)), t) for t in range(3)]
    assert await proc.handle_batch(batch) == ["applied"] * 3
    assert (await store.load(1)).history == (0, 1, 2)
    assert await store.counter(keys.STREAM_APPLIED) == 3


async def test_a_failing_dead_letter_topic_is_retried_and_sends_each_record_once() -> None:
    class FlakyTopic(RecordingTopic):
        failures: int = 3

        async def send_many(self, records):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker is away")
            return await super().send_many(records)

    store, dlq = InMemoryUserStateStore(), FlakyTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), FAST)
    good = encode_listen_event(listen(user=1, track=7))
    outcomes = await proc.handle_batch([record(b"{", 0), record(good, 1), record(b"[]", 2)])
    assert outcomes == ["dead_letter", "applied", "dead_letter"]
    assert [m["value"] for m in dlq.sent] == [b"{", b"[]"]
    assert await store.counter(keys.STREAM_DEAD_LETTERS) == 2


async def test_events_of_one_user_in_one_batch_fold_in_order() -> None:
    store = InMemoryUserStateStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig())
    events = [
        listen(user=1, track=1, recommendation=2),
        listen(user=1, track=2, message="last"),
        listen(user=1, track=9, recommendation=3),
    ]
    batch = [record(encode_listen_event(e), i) for i, e in enumerate(events)]
    batch.append(batch[1])  # a redelivery inside the batch
    assert await proc.handle_batch(batch) == ["applied"] * 3 + ["duplicate"]
    state = await store.load(1)
    assert state.history == (1, 2, 9) and state.sessions == 2 and state.session_start == 9


async def test_an_event_the_fold_cannot_handle_is_dead_lettered_not_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fold(state, event, position, config):  # type: ignore[no-untyped-def]
        if event.track == 13:
            raise ValueError("a bug")
        return apply_listen(state, event, position, config)

    def fold_all(state, events, config):  # type: ignore[no-untyped-def]
        if any(event.track == 13 for _, event, _ in events):
            raise ValueError("a bug")
        return fold_listens(state, events, config)

    # The batch fold raises, then the event-by-event fold finds the event it raises on; the
    # other user of the batch folds on the fast path.
    monkeypatch.setattr(agents, "fold_listens", fold_all)
    # The event-by-event fold is botify.state.fold_each: its apply_listen is the one to fail.
    monkeypatch.setattr(botify.state, "apply_listen", fold)
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), FAST)
    tracks = ((1, 12), (2, 12), (1, 13), (2, 13), (1, 14), (2, 15))
    batch = [
        record(encode_listen_event(listen(user=u, track=t)), i, key=b"%d" % u)
        for i, (u, t) in enumerate(tracks)
    ]
    with caplog.at_level("ERROR", logger=agents.__name__):
        outcomes = await proc.handle_batch(batch)
    assert outcomes == ["applied", "applied", "dead_letter", "dead_letter", "applied", "applied"]
    assert (await store.load(1)).history == (12, 14)
    assert (await store.load(2)).history == (12, 15)
    assert len(dlq.sent) == 2 and all(b"a bug" in m["headers"]["botify-error"] for m in dlq.sent)
    assert await store.counter(keys.STREAM_DUPLICATES) == 0
    # Both users fell back; one log line (rate-limited), with the exception.
    fallbacks = [r for r in caplog.records if "fold_listens failed" in r.getMessage()]
    assert len(fallbacks) == 1 and fallbacks[0].exc_info is not None


async def test_a_spurious_batch_fold_failure_ends_as_the_fast_path_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``fold_listens`` raising though every event folds: the event-by-event fold gives the
    same outcomes, states, popularity and counters."""
    events = [
        (1, listen(user=1, track=1, recommendation=2)),
        (2, listen(user=2, track=4, time=0.3)),
        (1, listen(user=1, track=2, message="last")),
        (2, listen(user=2, track=5, recommendation=6)),
        (1, listen(user=1, track=9, recommendation=3)),
    ]
    batch = [record(encode_listen_event(e), i, key=b"%d" % u) for i, (u, e) in enumerate(events)]
    batch.append(batch[2])  # a redelivery inside the batch

    async def run() -> tuple[list[str], InMemoryUserStateStore]:
        store = InMemoryUserStateStore()
        proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
        return await proc.handle_batch(batch), store

    fast_outcomes, fast = await run()

    def refuse(state, events, config):  # type: ignore[no-untyped-def]
        raise RuntimeError("spurious")

    monkeypatch.setattr(agents, "fold_listens", refuse)
    slow_outcomes, slow = await run()
    assert fast_outcomes == ["applied"] * 5 + ["duplicate"]
    assert slow_outcomes == fast_outcomes
    assert await slow.load_many([1, 2]) == await fast.load_many([1, 2])
    for track in (1, 2, 4, 5, 9):
        assert await slow.track_stats(track) == await fast.track_stats(track)
    for counter in (keys.STREAM_APPLIED, keys.STREAM_DUPLICATES, keys.STREAM_DEAD_LETTERS):
        assert await slow.counter(counter) == await fast.counter(counter)


class RacedStore(InMemoryUserStateStore):
    """Another writer (a worker that has not noticed it lost the partition) commits the
    user's first event between this worker's load and its commit, once."""

    def __init__(self, other: list) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.other = other

    async def commit_users(self, commits):  # type: ignore[no-untyped-def]
        if self.other:
            await self.commit(self.other.pop())
        return await super().commit_users(commits)


async def test_a_user_changed_under_the_fold_is_folded_again_and_counted_once() -> None:
    events = [listen(user=1, track=t, time=0.5) for t in (1, 2)]
    other = apply_listen(UserState(1), events[0], Position(2, 0), StateConfig())
    store = RacedStore([other])
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    batch = [record(encode_listen_event(e), i) for i, e in enumerate(events)]
    assert await proc.handle_batch(batch) == ["duplicate", "applied"]
    assert (await store.load(1)).history == (1, 2)
    assert await store.track_stats(1) == (1, 0.5)  # the other writer's play only
    assert await store.track_stats(2) == (1, 0.5)


class CountingStore(InMemoryUserStateStore):
    """Counts the users loaded and the user commits refused (compare-and-set)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[int] = []
        self.refused = 0

    async def load_many(self, users):  # type: ignore[no-untyped-def]
        self.loaded += list(users)
        return await super().load_many(users)

    async def commit_users(self, commits):  # type: ignore[no-untyped-def]
        written = await super().commit_users(commits)
        self.refused += written.count(False)
        return written


async def test_a_cached_state_another_writer_moved_on_is_refused_and_reloaded() -> None:
    store = CountingStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    first, theirs, mine = (listen(user=1, track=t, time=0.5) for t in (1, 2, 3))
    assert await proc.handle(record(encode_listen_event(first), 0)) == "applied"
    # Another worker applies offset 1 behind this one's back (its cache still says offset 0).
    await store.commit(apply_listen(await store.load(1), theirs, Position(2, 1), StateConfig()))
    store.loaded.clear()
    batch = [record(encode_listen_event(e), i) for i, e in ((1, theirs), (2, mine))]
    assert await proc.handle_batch(batch) == ["duplicate", "applied"]
    # The fold from the cached state was refused, then the user was loaded and folded again.
    assert store.refused == 1 and store.loaded == [1]
    assert (await store.load(1)).history == (1, 2, 3)
    assert await store.track_stats(2) == (1, 0.5)


async def test_a_cached_user_is_not_loaded_again() -> None:
    store = CountingStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    for offset, track in enumerate((1, 2)):
        raw = encode_listen_event(listen(user=1, track=track))
        assert await proc.handle(record(raw, offset)) == "applied"
    assert store.loaded == [1] and store.refused == 0  # the second batch used the cache
    assert (await store.load(1)).history == (1, 2)


async def test_without_a_cache_every_batch_loads_its_users() -> None:
    store = CountingStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST, cache_users=0)
    for offset, track in enumerate((1, 2)):
        raw = encode_listen_event(listen(user=1, track=track))
        assert await proc.handle(record(raw, offset)) == "applied"
    assert store.loaded == [1, 1]
    assert (await store.load(1)).history == (1, 2)


async def test_a_listen_of_a_track_not_in_the_catalog_is_dead_lettered_not_folded() -> None:
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), known_tracks=frozenset(range(100)))
    batch = [
        record(encode_listen_event(listen(user=1, track=5, recommendation=6)), 0),
        record(encode_listen_event(listen(user=1, track=500, recommendation=6)), 1),
        record(encode_listen_event(listen(user=1, track=6, recommendation=501)), 2),
    ]
    assert await proc.handle_batch(batch) == ["applied", "dead_letter", "dead_letter"]
    assert (await store.load(1)).history == (5,)
    assert await store.track_stats(500) == (0, 0.0)
    assert [m["headers"]["botify-error"] for m in dlq.sent] == [
        b"unknown track 500: not in the catalog",
        b"unknown recommendation 501: not in the catalog",
    ]


async def test_the_catalog_check_is_unknown_tracks_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The inline pre-check only spares the common case a call: on a miss, unknown_track
    decides, so a rule it drops is dropped by the stream too (never a reasonless letter)."""
    monkeypatch.setattr(agents, "unknown_track", lambda track, recommendation, known: None)
    store, dlq = InMemoryUserStateStore(), RecordingTopic()
    proc = ListenProcessor(store, dlq, StateConfig(), known_tracks=frozenset(range(100)))
    raw = encode_listen_event(listen(user=1, track=500))
    assert await proc.handle_batch([record(raw, 0)]) == ["applied"]
    assert (await store.load(1)).history == (500,) and dlq.sent == []


def fold_of(events: list, user: int = 1) -> UserState:  # type: ignore[type-arg]
    """What replaying ``events`` (offsets 0, 1, ... of partition 2) makes of the user."""
    state = UserState(user)
    for offset, event in enumerate(events):
        state = apply_listen(state, event, Position(2, offset), StateConfig()).state
    return state


async def test_submitted_batches_finish_in_order_and_fold_from_the_one_in_flight() -> None:
    events = [listen(user=u, track=t, time=0.5) for t in range(1, 7) for u in (1, 2)]
    store = CountingStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    batches = [
        [record(encode_listen_event(e), 2 * b + i, key=str(e.user).encode()) for i, e in pair]
        for b, pair in enumerate(
            [list(enumerate(events[i : i + 2])) for i in range(0, len(events), 2)]
        )
    ]
    assert await proc.submit(batches[0]) == []  # in flight: its replies are not read yet
    for batch in batches[1:]:
        assert await proc.submit(batch) == [["applied", "applied"]]  # the one before
    assert await proc.finish() == [["applied", "applied"]]
    assert await proc.finish() == []
    # Each batch folded from the one before it, not from Redis: each user loaded once.
    assert sorted(store.loaded) == [1, 2] and store.refused == 0
    for user in (1, 2):
        mine = [e for e in events if e.user == user]
        state = await store.load(user)
        assert state.history == tuple(range(1, 7))
        assert state.listens == fold_of(mine, user).listens
    assert await store.counter(keys.STREAM_APPLIED) == 12


async def test_a_conflict_with_a_batch_in_flight_settles_it_before_folding_again() -> None:
    # Another writer commits the user's first event before this worker's first commit: the
    # first batch's commit is refused, and so is the second's (folded from the first), sent
    # before the first was refolded. The third batch is folded only once both are settled.
    events = [listen(user=1, track=t, time=0.5) for t in range(1, 6)]
    other = apply_listen(UserState(1), events[0], Position(2, 0), StateConfig())
    store = RacedStore([other])
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    raw = [record(encode_listen_event(e), i) for i, e in enumerate(events)]
    assert await proc.submit(raw[0:2]) == []
    assert await proc.submit(raw[2:3]) == [["duplicate", "applied"]]
    # The second batch's commit was refused too: it is settled (refolded) first.
    assert await proc.submit(raw[3:5]) == [["applied"]]
    assert await proc.finish() == [["applied", "applied"]]
    state = await store.load(1)
    assert state.history == (1, 2, 3, 4, 5)
    assert state.position == Position(2, 4)
    assert await store.track_stats(1) == (1, 0.5)  # counted once, by the other writer


async def test_an_abandoned_batch_is_not_reported_and_its_users_are_not_reused() -> None:
    store = CountingStore()
    proc = ListenProcessor(store, RecordingTopic(), StateConfig(), FAST)
    assert await proc.submit([record(encode_listen_event(listen(user=1, track=1)), 0)]) == []
    proc.abandon()  # the worker stops: the batch is replayed by the next owner
    assert await proc.finish() == []
    assert await proc.handle(record(encode_listen_event(listen(user=1, track=2)), 1)) == "applied"
