"""Where per-user state lives. Backends are picked by URL: ``memory://``, or Redis at
``redis://``, ``rediss://`` (TLS) or ``unix://``."""

from __future__ import annotations

from botify.settings import RedisSettings
from botify.storage.base import UserStateStore
from botify.storage.connection import redact
from botify.storage.memory import InMemoryUserStateStore
from botify.storage.redis import RedisUserStateStore


def open_user_state_store(
    settings: RedisSettings, timeout_s: float | None = None
) -> UserStateStore:
    """The store at ``settings.url``; with ``timeout_s``, a Redis command that gets no reply
    in time raises instead of waiting for Redis to come back (the API: a 503)."""
    if settings.url.startswith("memory://"):
        return InMemoryUserStateStore()
    if settings.url.startswith(("redis://", "rediss://", "unix://")):
        return RedisUserStateStore.connect(settings, timeout_s)
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
