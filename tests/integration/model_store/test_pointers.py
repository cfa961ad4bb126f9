"""The pointer scripts on a real Redis: promotions move forward only, a rollback moves the
pointer only from the version its caller saw, and every move is in the history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from botify import keys
from botify.model_store.pointers import HISTORY_LIMIT, PointerMove, RedisVersionPointers

NOW_MS = 1_800_000_000_123  # beyond 2**31 and a double's 14 significant digits


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def model() -> str:
    return f"m_{uuid.uuid4().hex[:8]}"


async def test_promotions_and_rollbacks_are_recorded_with_the_move(
    client: aioredis.Redis, model: str
) -> None:
    pointers = RedisVersionPointers(client)
    for _ in range(3):
        version = await pointers.allocate(model, 0)
        assert await pointers.flip(model, version, NOW_MS)
    assert not await pointers.flip(model, 2, NOW_MS)  # never backwards by a publisher
    assert await pointers.rollback(model, 1, seen=3, at_ms=NOW_MS + 1) == 3
    assert await pointers.current(model) == 1
    assert await pointers.history(model) == [
        PointerMove("promote", 1, None, NOW_MS),
        PointerMove("promote", 2, 1, NOW_MS),
        PointerMove("promote", 3, 2, NOW_MS),
        PointerMove("rollback", 1, 3, NOW_MS + 1),
    ]
    # Numbers are never reused after a rollback.
    assert await pointers.allocate(model, 0) == 4
    assert await pointers.sequence(model) == 4


async def test_a_rollback_from_a_version_no_longer_current_changes_nothing(
    client: aioredis.Redis, model: str
) -> None:
    pointers = RedisVersionPointers(client)
    assert await pointers.rollback(model, 1, seen=1, at_ms=NOW_MS) is None  # no pointer yet
    for version in (1, 2, 3):
        await pointers.flip(model, version, NOW_MS)
    assert await pointers.rollback(model, 1, seen=2, at_ms=NOW_MS) == 3
    assert await pointers.current(model) == 3
    assert len(await pointers.history(model)) == 3


async def test_the_history_is_json_and_bounded(client: aioredis.Redis, model: str) -> None:
    pointers = RedisVersionPointers(client)
    await client.rpush(keys.model_promotions(model), *([b"{}"] * HISTORY_LIMIT))
    await pointers.flip(model, 7, NOW_MS)
    raw = await client.lrange(keys.model_promotions(model), 0, -1)
    assert len(raw) == HISTORY_LIMIT
    assert orjson.loads(raw[-1]) == {
        "action": "promote",
        "version": 7,
        "previous": None,
        "at_ms": NOW_MS,
    }


async def test_no_key_but_the_sequence_pointer_and_history_is_written(
    client: aioredis.Redis, model: str
) -> None:
    pointers = RedisVersionPointers(client)
    await pointers.flip(model, await pointers.allocate(model, 0), NOW_MS)
    await pointers.rollback(model, 1, seen=1, at_ms=NOW_MS)
    written = {k.decode() async for k in client.scan_iter(match=f"*{model}*")}
    assert written == {
        keys.model_sequence(model),
        keys.model_current(model),
        keys.model_promotions(model),
    }


async def test_a_flip_with_an_expected_version_moves_only_from_it(
    client: aioredis.Redis, model: str
) -> None:
    pointers = RedisVersionPointers(client)
    assert not await pointers.flip(model, 1, NOW_MS, expected=3)  # no pointer yet
    assert await pointers.flip(model, 1, NOW_MS, expected=None)
    assert not await pointers.flip(model, 2, NOW_MS, expected=None)  # there is one now
    assert await pointers.flip(model, 2, NOW_MS, expected=1)
    assert await pointers.rollback(model, 1, seen=2, at_ms=NOW_MS) == 2
    # A candidate judged against v2 does not undo the rollback to v1.
    assert not await pointers.flip(model, 3, NOW_MS, expected=2)
    assert await pointers.current(model) == 1
    assert await pointers.flip(model, 3, NOW_MS, expected=1)
    assert [m.version for m in await pointers.history(model)] == [1, 2, 1, 3]
