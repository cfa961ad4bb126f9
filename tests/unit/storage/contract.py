"""The UserStateStore contract, run on every backend (memory: unit; Redis: integration)."""

from __future__ import annotations

from botify.session_log import SessionLog
from botify.state import Position, StateConfig, TrackPlay, UserCommit, UserState, apply_listen
from botify.storage import UserStateStore
from tests.factories import listen

CONFIG = StateConfig()


async def check_unknown_user_has_empty_state(store: UserStateStore) -> None:
    assert await store.load(424242) == UserState(424242)
    assert await store.load_for_request(424242) == (UserState(424242), SessionLog())


async def check_commit_stores_state_and_popularity(store: UserStateStore) -> None:
    t = apply_listen(UserState(7), listen(user=7, track=3, time=0.5), Position(0, 0), CONFIG)
    assert await store.commit(t)
    assert await store.load(7) == t.state
    assert await store.track_stats(3) == (1, 0.5)
    assert 3 in await store.top_tracks(10)


async def check_commit_of_an_older_position_is_refused(store: UserStateStore) -> None:
    first = apply_listen(UserState(8), listen(user=8, track=4, time=1.0), Position(1, 5), CONFIG)
    assert await store.commit(first)
    stale = apply_listen(UserState(8), listen(user=8, track=4, time=1.0), Position(1, 5), CONFIG)
    assert not await store.commit(stale)
    assert await store.track_stats(4) == (1, 1.0)


async def check_load_many_gives_each_user_their_state_or_an_empty_one(
    store: UserStateStore,
) -> None:
    t = apply_listen(UserState(20), listen(user=20, track=1), Position(0, 0), CONFIG)
    await store.commit(t)
    assert await store.load_many([20, 21]) == {20: t.state, 21: UserState(21)}
    assert await store.load_many([]) == {}


async def check_commits_in_order_refuse_what_is_not_newer(
    store: UserStateStore,
) -> None:
    first = apply_listen(UserState(30), listen(user=30, track=6, time=0.5), Position(2, 1), CONFIG)
    second = apply_listen(first.state, listen(user=30, track=7), Position(2, 2), CONFIG)
    stale = apply_listen(UserState(30), listen(user=30, track=6), Position(2, 1), CONFIG)
    skipped = apply_listen(second.state, listen(user=30, track=8), Position(2, 2), CONFIG)
    written = [await store.commit(t) for t in (first, second, stale, skipped)]
    assert written == [True, True, False, False]
    assert await store.load(30) == second.state
    assert await store.track_stats(6) == (1, 0.5)
    assert await store.track_stats(8) == (0, 0.0)


async def check_session_record_is_appended_and_cleared(store: UserStateStore) -> None:
    await store.record_request(9, 1, 1.0, 2)
    await store.record_request(9, 2, 0.25, 3)
    session = (await store.load_for_request(9))[1]
    assert session.tracks == (1, 2, 2, 3)
    assert session.listens == ((1, 1.0), (2, 0.25))
    await store.end_session(9)
    assert (await store.load_for_request(9))[1] == SessionLog()


async def check_top_tracks_rank_by_listen_time(store: UserStateStore) -> None:
    for offset, (track, time) in enumerate([(50, 0.2), (51, 1.0), (52, 0.6), (51, 1.0)]):
        user = 100 + offset
        t = apply_listen(
            UserState(user), listen(user=user, track=track, time=time), Position(0, 0), CONFIG
        )
        await store.commit(t)
    top = await store.top_tracks(3)
    assert top[:2] == [51, 52]


async def check_counters(store: UserStateStore) -> None:
    await store.incr("botify:test:c")
    await store.incr("botify:test:c", 2)
    assert await store.counter("botify:test:c") == 3
    assert await store.ping()


def folded(state: UserState, *tracks: int, first_offset: int = 0) -> UserCommit:
    """``state`` with one listen of each track folded in, from partition 0."""
    start, plays = state.position, []
    for i, track in enumerate(tracks):
        t = apply_listen(
            state,
            listen(user=state.user, track=track, time=0.25),
            Position(0, first_offset + i),
            CONFIG,
        )
        state, plays = t.state, plays + list(t.plays)
    return UserCommit(state, start, tuple(plays))


async def check_commit_users_writes_every_user_and_sums_popularity_per_track(
    store: UserStateStore,
) -> None:
    commits = [folded(UserState(20), 5, 6, 5), folded(UserState(21), 5)]
    assert await store.commit_users(commits) == [True, True]
    assert await store.load_many([20, 21]) == {20: commits[0].state, 21: commits[1].state}
    assert await store.track_stats(5) == (3, 0.75)
    assert await store.track_stats(6) == (1, 0.25)
    assert await store.commit_users([]) == []


async def check_commit_users_writes_only_where_the_stored_position_is_the_expected_one(
    store: UserStateStore,
) -> None:
    first = folded(UserState(30), 7)
    assert await store.commit_users([first]) == [True]
    # Folded from an empty state, but the user has one now: refused, popularity untouched.
    stale = folded(UserState(30), 8, first_offset=1)
    onward = folded(first.state, 8, first_offset=1)
    new_user = folded(UserState(31), 8)
    assert await store.commit_users([stale, new_user, onward]) == [False, True, True]
    assert await store.load(30) == onward.state
    assert await store.track_stats(8) == (2, 0.5)
    # The same commit again (a redone batch): the position moved on, so nothing is written.
    assert await store.commit_users([onward]) == [False]
    assert await store.track_stats(8) == (2, 0.5)
    assert TrackPlay(8, 0.25) in onward.plays


async def check_commit_users_compares_offsets_beyond_a_double_exactly(
    store: UserStateStore,
) -> None:
    # Above 2**53 a double cannot tell neighbouring offsets apart: the check must not
    # go through one.
    big = 2**53
    stored = folded(UserState(40), 7, first_offset=big + 1)
    assert await store.commit_users([stored]) == [True]
    one_behind = folded(UserState(40), 7, first_offset=big).state
    stale = folded(one_behind, 8, first_offset=big + 1)
    assert stale.expected == Position(0, big)
    assert await store.commit_users([stale]) == [False]
    assert await store.load(40) == stored.state
    onward = folded(stored.state, 8, first_offset=big + 2)
    assert await store.commit_users([onward]) == [True]
    assert await store.load(40) == onward.state


async def check_incr_many_adds_to_every_counter(store: UserStateStore) -> None:
    await store.incr_many({"botify:stream:a": 2, "botify:stream:b": 3})
    await store.incr_many({"botify:stream:a": 1})
    assert await store.counter("botify:stream:a") == 3
    assert await store.counter("botify:stream:b") == 3


CHECKS = [v for k, v in sorted(globals().items()) if k.startswith("check_")]
