from __future__ import annotations

import pytest
import redis

from botify.storage import RedisUserStateStore
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
