"""Deadlines kept in one table and swept by one timer: the API's header and body timeouts.

A timer per waiting request costs ~5 us (``asyncio.timeout`` ~16 us) of a /next that takes
a few hundred, and almost every request is done long before its deadline; a dictionary
entry costs a fraction of that. The table is swept every quarter of the timeout, so a
deadline is kept to within a quarter of it, and no timer runs while the table is empty.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class SweptDeadlines(Generic[K]):
    """Keys that must be stopped within ``timeout_s`` of being started, else ``on_expired``
    is called with them (once, from the event loop)."""

    def __init__(self, timeout_s: float, on_expired: Callable[[K], None]) -> None:
        self.timeout_s = timeout_s
        self._on_expired = on_expired
        self._deadlines: dict[K, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def start(self, key: K, loop: asyncio.AbstractEventLoop) -> None:
        """``key``'s deadline is ``timeout_s`` from now (a started key starts again)."""
        self._deadlines[key] = loop.time() + self.timeout_s
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.timeout_s / 4, self._sweep, loop)

    def stop(self, key: K) -> None:
        """``key`` is done in time (or was never started)."""
        self._deadlines.pop(key, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for key, deadline in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[key]
                self._on_expired(key)
        self._sweeper = (
            loop.call_later(self.timeout_s / 4, self._sweep, loop) if self._deadlines else None
        )
