from __future__ import annotations

from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botify.events import (
    DecodedListen,
    ListenEvent,
    ListenRecord,
    decode_listen_record,
    encode_listen_event,
)
from botify.state import (
    Position,
    StateConfig,
    TrackPlay,
    UserState,
    apply_listen,
    fold_each,
    fold_listens,
)
from botify.storage import InMemoryUserStateStore
from botify.training import TrainingExample
from tests.factories import listen

CONFIG = StateConfig(history_size=5, fail_threshold=0.5)


def fold(events, partition: int = 0) -> UserState:  # type: ignore[no-untyped-def]
    state = UserState(1)
    for offset, e in enumerate(events):
        state = apply_listen(state, e, Position(partition, offset), CONFIG).state
    return state


def test_first_next_starts_a_session_with_its_track_and_recommendation() -> None:
    s = fold([listen(track=10, recommendation=11)])
    assert s.in_session and s.session_start == 10 and s.session_tracks == (10, 11)
    assert s.sessions == 1 and s.listens == 1 and s.history == (10,)


def test_last_ends_the_session_and_the_next_next_starts_another() -> None:
    s = fold(
        [
            listen(track=10, recommendation=11),
            listen(track=11, recommendation=12),
            listen(track=12, message="last"),
            listen(track=20, recommendation=21),
        ]
    )
    assert s.sessions == 2 and s.session_start == 20 and s.session_tracks == (20, 21)
    assert s.history == (10, 11, 12, 20)


def test_fail_count_counts_consecutive_short_listens_and_resets() -> None:
    s = fold([listen(time=0.2), listen(time=0.1), listen(time=0.49)])
    assert s.fail_count == 3
    assert fold([listen(time=0.2), listen(time=0.9)]).fail_count == 0


def test_history_is_capped_newest_last() -> None:
    s = fold([listen(track=t, recommendation=t + 1, time=t / 10) for t in range(8)])
    assert s.history == (3, 4, 5, 6, 7) and s.history_times == (0.3, 0.4, 0.5, 0.6, 0.7)


def test_each_applied_listen_is_one_play_of_its_track_with_its_time() -> None:
    first = apply_listen(UserState(1), listen(track=4, time=0.25), Position(0, 0), CONFIG)
    last = apply_listen(
        first.state, listen(track=5, time=0.75, message="last"), Position(0, 1), CONFIG
    )
    assert first.plays == (TrackPlay(4, 0.25),) and last.plays == (TrackPlay(5, 0.75),)


def test_session_tracks_hold_played_and_served_tracks_once_each() -> None:
    s = fold(
        [
            listen(track=1, recommendation=2),
            listen(track=2, recommendation=1),  # served again: already in the session
            listen(track=1, recommendation=3),
        ]
    )
    assert s.session_tracks == (1, 2, 3) and s.session_start == 1


def test_an_event_at_an_applied_position_changes_nothing() -> None:
    state = fold([listen(track=1), listen(track=2)])
    again = apply_listen(state, listen(track=3), Position(0, 1), CONFIG)
    assert not again.applied and again.state == state and again.plays == ()


def test_state_survives_its_encoding() -> None:
    state = fold([listen(track=1, time=0.25), listen(track=2, message="last")])
    assert UserState.from_bytes(state.to_bytes()) == state


def fold_examples(events, partition: int = 0) -> list[TrainingExample | None]:  # type: ignore[no-untyped-def]
    """Each event's example, folding them in order from a new user's state."""
    state, out = UserState(1), []
    for offset, e in enumerate(events):
        t = apply_listen(state, e, Position(partition, offset), CONFIG)
        state = t.state
        out.append(t.example)
    return out


def test_a_session_first_next_is_no_example_and_each_later_listen_has_its_context() -> None:
    events = [
        listen(track=10, recommendation=11, time=1.0, timestamp=100),
        listen(track=11, recommendation=12, time=0.25, timestamp=200),
        listen(track=12, recommendation=13, time=0.75, timestamp=300),
    ]
    first, second, third = fold_examples(events, partition=2)
    assert first is None
    assert second == TrainingExample(
        timestamp=200,
        user=1,
        session_start=10,
        context=10,
        track=11,
        time=0.25,
        partition=2,
        offset=1,
        recommender="random",  # the listen event's: the arm that chose track 11
    )
    assert third is not None
    assert (third.session_start, third.context, third.track, third.time) == (10, 11, 12, 0.75)
    assert (third.timestamp, third.offset) == (300, 2)


def test_last_is_an_example_and_ends_the_session_so_the_next_next_is_none() -> None:
    examples = fold_examples(
        [
            listen(track=10, recommendation=11),
            listen(track=11, message="last", time=0.5),
            listen(track=20, recommendation=21),  # a new session's start
            listen(track=21, recommendation=22, time=0.3),
        ]
    )
    assert examples[0] is None and examples[2] is None
    last, later = examples[1], examples[3]
    assert last is not None and (last.session_start, last.context, last.track) == (10, 10, 11)
    assert later is not None and (later.session_start, later.context, later.track) == (20, 20, 21)


def test_a_last_outside_a_session_is_no_example() -> None:
    assert fold_examples([listen(track=5, message="last")]) == [None]
    ended = fold_examples(
        [listen(track=5), listen(track=6, message="last"), listen(track=7, message="last")]
    )
    assert ended[1] is not None and ended[2] is None


def test_context_is_the_listened_track_even_when_it_was_not_the_recommendation() -> None:
    examples = fold_examples(
        [listen(track=1, recommendation=2), listen(track=5, recommendation=6), listen(track=7)]
    )
    assert [(e.context, e.track) for e in examples[1:] if e is not None] == [(1, 5), (5, 7)]


def test_context_and_start_survive_a_history_of_one() -> None:
    config = StateConfig(history_size=1)
    first = apply_listen(UserState(1), listen(track=1), Position(0, 0), config)
    second = apply_listen(first.state, listen(track=2), Position(0, 1), config)
    third = apply_listen(second.state, listen(track=3), Position(0, 2), config)
    assert third.example is not None
    assert (third.example.context, third.example.session_start) == (2, 1)


def test_a_replayed_event_makes_no_example() -> None:
    state = fold([listen(track=1), listen(track=2)])
    again = apply_listen(state, listen(track=2), Position(0, 1), CONFIG)
    assert not again.applied and again.example is None


events = st.lists(
    st.builds(
        lambda track, rec, time, last: listen(
            track=track,
            recommendation=None if last else rec,
            time=time,
            message="last" if last else "next",
        ),
        st.integers(0, 20),
        st.integers(0, 20),
        st.sampled_from([0.0, 0.3, 0.5, 1.0]),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(
    events=events,
    redeliveries=st.lists(st.tuples(st.integers(0, 24), st.integers(0, 24)), max_size=6),
)
async def test_redelivered_prefixes_leave_state_and_popularity_as_one_delivery(
    events,
    redeliveries,  # type: ignore[no-untyped-def]
) -> None:
    """At-least-once: after a crash a consumer re-reads from an older committed offset."""
    once, replayed = InMemoryUserStateStore(), InMemoryUserStateStore()
    positions = [Position(0, i) for i in range(len(events))]
    for e, p in zip(events, positions, strict=True):
        await once.commit(apply_listen(await once.load(e.user), e, p, CONFIG))
    # A consumer's trace: read in order; a crash right after event `at` resumes from an
    # earlier offset `back_to`. Each crash happens once, so the trace is finite, and no
    # offset is ever skipped (that would be data loss, not at-least-once).
    crashes = [(at, back_to) for at, back_to in redeliveries if back_to <= at]
    schedule, cursor = [], 0
    while cursor < len(events):
        schedule.append(cursor)
        crash = next((c for c in crashes if c[0] == cursor), None)
        if crash is not None:
            crashes.remove(crash)
            cursor = crash[1]
        else:
            cursor += 1
    for i in schedule:
        e, p = events[i], positions[i]
        await replayed.commit(apply_listen(await replayed.load(e.user), e, p, CONFIG))
    assert await replayed.load(1) == await once.load(1)
    assert await replayed.top_tracks(100) == await once.top_tracks(100)
    # Examples come only from applied events: a replay emits none that one delivery lacks.
    assert examples_of(events, schedule) == examples_of(events, range(len(events)))
    for track in range(21):
        assert await replayed.track_stats(track) == await once.track_stats(track)


user_events = st.lists(
    st.builds(
        lambda user, track, time, last: listen(
            user=user,
            track=track,
            recommendation=None if last else track + 1,
            time=time,
            message="last" if last else "next",
        ),
        st.integers(0, 5),
        st.integers(0, 20),
        st.sampled_from([0.0, 0.3, 0.5, 1.0]),
        st.booleans(),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(events=user_events, data=st.data())
async def test_partitions_rewound_independently_leave_every_user_as_one_delivery(
    events,  # type: ignore[no-untyped-def]
    data,
) -> None:
    """Kafka's view: users keyed to two partitions, consumed in any interleaving; after a
    crash each partition resumes from its own earlier committed offset."""
    partitions = {p: [e for e in events if e.user % 2 == p] for p in (0, 1)}
    once, replayed = InMemoryUserStateStore(), InMemoryUserStateStore()
    for p, log in partitions.items():
        for offset, e in enumerate(log):
            await once.commit(apply_listen(await once.load(e.user), e, Position(p, offset), CONFIG))

    next_offset = {0: 0, 1: 0}
    crashes_left = 5  # bounds the schedule: each crash rewinds, nothing else does
    while live := [p for p in partitions if next_offset[p] < len(partitions[p])]:
        p = data.draw(st.sampled_from(live))
        e, position = partitions[p][next_offset[p]], Position(p, next_offset[p])
        await replayed.commit(apply_listen(await replayed.load(e.user), e, position, CONFIG))
        next_offset[p] += 1
        if crashes_left and data.draw(st.integers(0, 9)) == 0:
            crashes_left -= 1
            for q in partitions:
                next_offset[q] = data.draw(st.integers(0, next_offset[q]))

    for user in range(6):
        assert await replayed.load(user) == await once.load(user)
    for track in range(21):
        plays, listened = await replayed.track_stats(track)
        assert plays == (await once.track_stats(track))[0]
        # Sums over several users: the interleaving may change the order of float additions.
        assert listened == pytest.approx((await once.track_stats(track))[1])


def examples_of(events, schedule) -> list[TrainingExample]:  # type: ignore[no-untyped-def]
    """The examples a consumer following ``schedule`` (indices into events) emits."""
    state, out = UserState(1), []
    for i in schedule:
        t = apply_listen(state, events[i], Position(0, i), CONFIG)
        state = t.state
        if t.example is not None:
            out.append(t.example)
    return out


def _ends(events):  # type: ignore[no-untyped-def]
    state, ends = UserState(1), []
    for offset, e in enumerate(events):
        t = apply_listen(state, e, Position(0, offset), CONFIG)
        state = t.state
        if t.ended is not None:
            ends.append((t.ended.listens, round(t.ended.time, 9)))
    return ends


def test_a_last_closes_the_session_with_every_listen_since_the_previous_last() -> None:
    events = [
        listen(track=1, recommendation=2, time=0.5),
        listen(track=2, recommendation=3, time=0.25),
        listen(track=3, time=1.0, message="last"),
        listen(track=4, recommendation=5, time=0.125),
        listen(track=5, time=0.5, message="last"),
    ]
    assert _ends(events) == [(3, 1.75), (2, 0.625)]


def test_a_last_without_an_open_session_is_a_session_of_one_listen() -> None:
    events = [listen(track=3, time=0.5, message="last"), listen(track=4, time=0.25, message="last")]
    assert _ends(events) == [(1, 0.5), (1, 0.25)]


def test_only_a_last_ends_a_session_and_a_replayed_last_ends_none() -> None:
    first = apply_listen(UserState(1), listen(time=0.5), Position(0, 0), CONFIG)
    assert first.ended is None
    last = apply_listen(first.state, listen(time=0.5, message="last"), Position(0, 1), CONFIG)
    assert last.ended is not None
    replay = apply_listen(last.state, listen(time=0.5, message="last"), Position(0, 1), CONFIG)
    assert replay.ended is None and not replay.applied


def test_the_open_session_totals_survive_the_encoding_and_v1_states_still_read() -> None:
    import msgpack

    s = fold([listen(time=0.5), listen(time=0.25)])
    assert (s.session_listens, s.session_time) == (2, 0.75)
    assert UserState.from_bytes(s.to_bytes()) == s
    v1 = msgpack.packb((1, 7, (1,), (0.5,), True, 1, (1, 2), 0, 1, 1, (0, 3)))
    old = UserState.from_bytes(v1)
    assert old.user == 7 and old.position == Position(0, 3)
    assert (old.session_listens, old.session_time) == (0, 0.0)


def test_a_state_from_a_later_version_with_appended_fields_still_reads() -> None:
    import msgpack

    s = fold([listen(time=0.5)])
    later = msgpack.packb([4, *msgpack.unpackb(s.to_bytes())[1:], "a field of v4"])
    assert UserState.from_bytes(later) == s


def test_a_position_of_another_topic_lifetime_supersedes_whatever_its_offset() -> None:
    old, new = "tansu_cluster/AaInrBDuf5KBNofAR+Kgkw", "tansu_cluster/AaInrCT9eSOZfxSRz3dBbA"
    assert Position(0, 3, new).supersedes(Position(0, 900, old))
    assert not Position(0, 3, new).supersedes(Position(0, 3, new))  # a replay
    assert not Position(0, 2, new).supersedes(Position(0, 3, new))
    # An unknown source on either side (a state written before v3): offsets decide.
    assert not Position(0, 3, new).supersedes(Position(0, 900))
    assert Position(0, 901, new).supersedes(Position(0, 900))
    assert not Position(0, 3).supersedes(Position(0, 900, old))


def test_a_broker_restarted_without_its_data_is_not_mistaken_for_a_replay() -> None:
    old, new = "c/topic-1", "c/topic-2"
    state = UserState(1)
    for offset in range(10):  # the first broker's offsets 0..9
        state = apply_listen(state, listen(track=offset), Position(0, offset, old), CONFIG).state
    # The new broker starts again at offset 0: each event applies, then replays do not.
    for offset in range(3):
        t = apply_listen(state, listen(track=100 + offset), Position(0, offset, new), CONFIG)
        assert t.applied
        state = t.state
        assert not apply_listen(state, listen(), Position(0, offset, new), CONFIG).applied
    assert state.listens == 13 and state.position == Position(0, 2, new)


def test_the_source_survives_the_encoding_and_v2_states_read_without_one() -> None:
    import msgpack

    s = apply_listen(UserState(1), listen(), Position(2, 5, "c/t"), CONFIG).state
    assert UserState.from_bytes(s.to_bytes()).position == Position(2, 5, "c/t")
    v2 = msgpack.packb(msgpack.unpackb(s.to_bytes())[:13])
    v2 = msgpack.packb([2, *msgpack.unpackb(v2)[1:]])
    assert UserState.from_bytes(v2).position == Position(2, 5)


def test_the_folds_inline_replay_check_is_position_supersedes() -> None:
    """apply_listen inlines Position.supersedes for speed: the two must never disagree
    (the inline one once forgot the source)."""
    sources = (None, "c/t1", "c/t2")
    positions = [Position(p, o, s) for p in (0, 1) for o in (3, 5) for s in sources]
    for last in positions:
        state = apply_listen(UserState(1), listen(), last, CONFIG).state
        for position in positions:
            applied = apply_listen(state, listen(), position, CONFIG).applied
            assert applied == position.supersedes(last), (last, position)


positions = st.builds(
    Position,
    st.integers(0, 2**31 - 1),
    st.integers(-1, 2**63 - 1),
    st.one_of(st.none(), st.text(max_size=80)),
)
states = st.builds(
    UserState,
    user=st.integers(-(2**63), 2**63 - 1),
    history=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=60).map(tuple),
    history_times=st.lists(st.floats(allow_nan=False), max_size=60).map(tuple),
    in_session=st.booleans(),
    session_start=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    session_tracks=st.lists(st.integers(0, 2**40), max_size=40).map(tuple),
    fail_count=st.integers(0, 2**32),
    listens=st.integers(0, 2**63 - 1),
    sessions=st.integers(0, 2**32),
    position=st.one_of(st.none(), positions),
    session_listens=st.integers(0, 2**32),
    session_time=st.floats(allow_nan=False),
)


@given(states)
def test_a_state_encodes_to_the_bytes_msgpack_packb_writes_and_reads_back(
    state: UserState,
) -> None:
    # States written by older workers (msgpack.packb) and by this one are the same bytes.
    pos = None if state.position is None else (state.position.partition, state.position.offset)
    fields = (
        3,
        state.user,
        state.history,
        state.history_times,
        state.in_session,
        state.session_start,
        state.session_tracks,
        state.fail_count,
        state.listens,
        state.sessions,
        pos,
        state.session_listens,
        state.session_time,
        None if state.position is None else state.position.source,
    )
    assert state.to_bytes() == msgpack.packb(fields)
    assert UserState.from_bytes(state.to_bytes()) == state


fold_steps = st.lists(
    st.tuples(
        st.integers(0, 6),  # track
        st.integers(0, 6),  # recommendation
        st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
        st.booleans(),  # last
        st.integers(0, 1),  # partition
        st.integers(0, 8),  # offset: repeats and rewinds are replays
        st.sampled_from([None, "a", "b"]),  # the topic lifetime
    ),
    max_size=12,
)


def as_record(event: ListenEvent) -> DecodedListen:
    """The event as the stream decodes it: a msgspec ``ListenRecord``."""
    record = decode_listen_record(encode_listen_event(event))
    assert isinstance(record, ListenRecord)
    return record


# The stream folds msgspec-decoded records mostly; tools and the fallback decoder, models.
@pytest.mark.parametrize("decoded", [lambda e: e, as_record], ids=["ListenEvent", "ListenRecord"])
@settings(max_examples=300, deadline=None)
@given(
    before=fold_steps,
    steps=fold_steps,
    history_size=st.integers(1, 4),
)
def test_fold_listens_is_apply_listen_applied_to_each_event_in_turn(
    decoded: Callable[[ListenEvent], DecodedListen],
    before: list[tuple[int, int, float, bool, int, int, str | None]],
    steps: list[tuple[int, int, float, bool, int, int, str | None]],
    history_size: int,
) -> None:
    config = StateConfig(history_size=history_size, fail_threshold=0.5)

    def events(
        drawn: list[tuple[int, int, float, bool, int, int, str | None]],
    ) -> list[tuple[DecodedListen, Position]]:
        return [
            (
                decoded(
                    listen(track=t, recommendation=r, time=x, message="last" if end else "next")
                ),
                Position(p, o, s),
            )
            for t, r, x, end, p, o, s in drawn
        ]

    state = UserState(1)
    for event, position in events(before):  # any state the user may be in
        state = apply_listen(state, event, position, config).state
    given_events = events(steps)
    folded = fold_listens(
        state,
        [(10 + i, event, position) for i, (event, position) in enumerate(given_events)],
        config,
    )

    expected, applied, duplicates, plays, examples, ended = state, [], [], [], [], []
    for i, (event, position) in enumerate(given_events):
        t = apply_listen(expected, event, position, config)
        if not t.applied:
            duplicates.append(10 + i)
            assert t.state == expected
            continue
        applied.append(10 + i)
        plays += t.plays
        if t.example is not None:
            examples.append(t.example)
        if t.ended is not None:
            ended.append((event, t.ended))
        expected = t.state
    assert folded.state == expected
    assert folded.state.to_bytes() == expected.to_bytes()
    assert (folded.applied, folded.duplicates) == (applied, duplicates)
    assert folded.plays == tuple(plays) and folded.examples == examples
    assert folded.ended == ended
    assert folded.events == [given_events[tag - 10][0] for tag in applied]
    # The stream's fallback, one apply_listen at a time, gives the same fold.
    tagged = [(10 + i, event, position) for i, (event, position) in enumerate(given_events)]
    assert fold_each(state, tagged, config) == (folded, [])
    # A worker that publishes no examples folds the same, without building them.
    bare = fold_listens(state, tagged, config, examples_wanted=False)
    assert bare.examples == [] and bare.state == folded.state
    assert (bare.applied, bare.duplicates, bare.plays) == (
        folded.applied,
        folded.duplicates,
        folded.plays,
    )
    assert (bare.events, bare.ended) == (folded.events, folded.ended)
