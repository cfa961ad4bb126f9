"""Where per-user state lives. Backends are picked by URL: ``memory://`` or ``redis://``."""

from __future__ import annotations

from botify.storage.base import UserStateStore
from botify.storage.memory import InMemoryUserStateStore
from botify.storage.redis import RedisUserStateStore


def open_user_state_store(url: str, timeout_s: float | None = None) -> UserStateStore:
    if url.startswith("memory://"):
        return InMemoryUserStateStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisUserStateStore.from_url(url, timeout_s)
    raise ValueError(f"unsupported state store URL {url!r}: use memory:// or redis://")


__all__ = [
    "InMemoryUserStateStore",
    "RedisUserStateStore",
    "UserStateStore",
    "open_user_state_store",
]
