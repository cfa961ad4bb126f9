"""Where per-user state lives. Backends are picked by URL: ``memory://``, or Redis at
``redis://``, ``rediss://`` (TLS) or ``unix://``."""

from __future__ import annotations

from botify.settings import RedisSettings
from botify.storage.base import UserStateStore
from botify.storage.connection import redact
from botify.storage.memory import InMemoryUserStateStore
from botify.storage.redis import RedisUserStateStore


def open_user_state_store(settings: RedisSettings) -> UserStateStore:
    if settings.url.startswith("memory://"):
        return InMemoryUserStateStore()
    if settings.url.startswith(("redis://", "rediss://", "unix://")):
        return RedisUserStateStore.connect(settings)
    raise ValueError(
        f"unsupported state store URL {redact(settings.url)!r}: use memory://, redis://, "
        "rediss:// or unix://"
    )


__all__ = [
    "InMemoryUserStateStore",
    "RedisUserStateStore",
    "UserStateStore",
    "open_user_state_store",
]
