from __future__ import annotations

import msgspec
import pytest
import redis

from botify import keys
from botify.state import Position, UserState, apply_listen
from botify.storage import RedisUserStateStore
from tests.factories import listen
from tests.unit.storage.contract import CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
async def test_redis_store_honours_the_contract(check, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    url = redis_url.rsplit("/", 1)[0] + "/3"  # a db of its own, flushed per check
    redis.Redis.from_url(url).flushdb()
    store = RedisUserStateStore.from_url(url)
    try:
        await check(store)
    finally:
        await store.close()


async def test_plays_counted_in_the_legacy_sorted_set_still_count(redis_url: str) -> None:
    """Workers before the play-counts hash wrote plays to a sorted set: a track's plays are
    what either layout holds, so an upgrade (or an old worker in a rolling one) loses none."""
    url = redis_url.rsplit("/", 1)[0] + "/3"
    r = redis.Redis.from_url(url)
    r.flushdb()
    r.zincrby(keys.LEGACY_TRACK_PLAYS, 2, 3)  # two plays of track 3 by an old worker
    store = RedisUserStateStore.from_url(url)
    try:
        t = apply_listen(UserState(7), listen(user=7, track=3, time=0.5), Position(0, 0))
        assert await store.commit(t)
        assert await store.track_stats(3) == (3, 0.5)
        assert r.hget(keys.TRACK_PLAY_COUNTS, 3) == b"1"
        assert r.zscore(keys.LEGACY_TRACK_PLAYS, 3) == 2  # never written again
    finally:
        await store.close()
        r.close()


def test_the_commit_scripts_cmsgpack_refuses_msgpack_binary_types(redis_url: str) -> None:
    """Why the state blobs travel as plain script arguments, not in the packed rows: the
    Redis the tests run (6.2) decodes MessagePack's str types as raw bytes but refuses bin
    8/16/32. If a newer Redis fails this, the blobs could join the rows."""
    r = redis.Redis.from_url(redis_url)
    script = "return cmsgpack.unpack(ARGV[1])"
    try:
        assert r.eval(script, 0, b"\xd9\x03\x00\x01\xfe") == b"\x00\x01\xfe"  # str 8
        for blob in (b"\x00\x01\xfe", b"\x00" * 300, b"\x00" * 70_000):  # bin 8, 16, 32
            with pytest.raises(redis.ResponseError, match="Bad data format"):
                r.eval(script, 0, msgspec.msgpack.encode(blob))
    finally:
        r.close()
