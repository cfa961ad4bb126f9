"""Fixtures of the stream worker tests; each module defines ``store_url`` (its own db)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def r(store_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(store_url)
    yield client
    client.close()
