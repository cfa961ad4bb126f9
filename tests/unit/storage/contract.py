"""The UserStateStore contract, run on every backend (memory: unit; Redis: integration)."""

from __future__ import annotations

from botify.session import SessionLog
from botify.state import Position, StateConfig, UserState, apply_listen
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


async def check_commit_many_writes_in_order_and_refuses_what_is_not_newer(
    store: UserStateStore,
) -> None:
    first = apply_listen(UserState(30), listen(user=30, track=6, time=0.5), Position(2, 1), CONFIG)
    second = apply_listen(first.state, listen(user=30, track=7), Position(2, 2), CONFIG)
    stale = apply_listen(UserState(30), listen(user=30, track=6), Position(2, 1), CONFIG)
    skipped = apply_listen(second.state, listen(user=30, track=8), Position(2, 2), CONFIG)
    assert await store.commit_many([first, second, stale, skipped]) == [True, True, False, False]
    assert await store.load(30) == second.state
    assert await store.track_stats(6) == (1, 0.5)
    assert await store.track_stats(8) == (0, 0.0)
    assert await store.commit_many([]) == []


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


CHECKS = [v for k, v in sorted(globals().items()) if k.startswith("check_")]
