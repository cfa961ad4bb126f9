"""Keeps ``botify up``'s stack running: a crashed service is restarted with backoff, and the
death of a backend stops everything at once with one clear message.

Services can be restarted because none holds data of its own: a stream worker resumes from
its group's committed offsets and its compare-and-set commits make the replay exact; the
trainer resumes from its example log; an API instance's unflushed buffer is already lost with
the crash (README "Durability"). The backends are another matter. The embedded broker keeps
events in memory only and the embedded Redis runs without persistence: a restarted one would
come back empty, so the stack stops instead of carrying on against a blank copy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botify.errors import BackendUnavailableError, BotifyError
from botify.settings import EmbeddedSettings
from botify_cli.stack import EmbeddedStack

# Children whose death ends the stack: a restart would come back without their data.
BACKENDS = ("broker", "redis")


class BackendDiedError(BotifyError):
    """The broker or Redis of the embedded stack exited."""


class BrokerMemoryError(BotifyError):
    """The embedded broker's memory went past ``embedded.broker_max_memory_mb``."""


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th restart in a row: first_s, doubling, at most max_s."""

    first_s: float
    max_s: float

    def delay(self, crashes_in_a_row: int) -> float:
        return min(self.first_s * 2.0 ** max(crashes_in_a_row - 1, 0), self.max_s)


@dataclass
class ChildRecord:
    """What the supervisor knows of one service child."""

    started_at: float
    # Crashes since it last stayed up restart_stable_s; sets the backoff.
    crashes_in_a_row: int = 0
    restarts: int = 0
    # When the pending restart is due; None while the child runs.
    restart_at: float | None = None
    # Respawned, not healthy yet: polled each check, never waited for (an API instance may
    # take its whole start timeout, and the other children need watching meanwhile).
    starting: bool = False


@dataclass
class Supervisor:
    """One ``check()`` per tick of ``botify up``'s loop."""

    stack: EmbeddedStack
    settings: EmbeddedSettings
    say: Callable[[str], None] = lambda _msg: None
    clock: Callable[[], float] = time.monotonic
    records: dict[str, ChildRecord] = field(default_factory=dict)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.settings.restart_backoff_s, self.settings.restart_backoff_max_s)

    def check(self) -> None:
        """Restart what is due; raise when a backend died or the broker outgrew its bound."""
        now = self.clock()
        for name, record in self.records.items():
            if record.starting:
                self._poll_start(name, record)
        for name in self.stack.dead():
            if name in BACKENDS:
                raise BackendDiedError(self._backend_died(name))
            record = self.records.setdefault(name, ChildRecord(started_at=now))
            if record.restart_at is None:
                self._schedule(name, record, now)
            elif now >= record.restart_at:
                self._respawn(name, record)
        self._guard_broker_memory()

    def _schedule(self, name: str, record: ChildRecord, now: float) -> None:
        code = self.stack.exit_code(name)
        stayed_up = now - record.started_at >= self.settings.restart_stable_s
        record.crashes_in_a_row = 1 if stayed_up else record.crashes_in_a_row + 1
        delay = self.backoff.delay(record.crashes_in_a_row)
        record.restart_at = now + delay
        how = "" if code is None else f" with code {code}"
        self.say(
            f"{name} exited{how}; restarting it in {delay:g} s "
            f"(crash {record.crashes_in_a_row} in a row; log: {self.stack.log_path(name)})"
        )

    def _respawn(self, name: str, record: ChildRecord) -> None:
        record.restart_at = None
        try:
            self.stack.respawn(name)
        except BackendUnavailableError as exc:
            # Still dead: the next check schedules it again with a longer delay.
            self.say(f"{name} did not come back: {exc}")
            record.started_at = self.clock()
            return
        record.starting = True
        self._poll_start(name, record)

    def _poll_start(self, name: str, record: ChildRecord) -> None:
        try:
            if not self.stack.ready(name):
                return
        except BackendUnavailableError as exc:
            # Stopped: the next check finds it dead and schedules it with a longer delay.
            self.say(f"{name} did not come back: {exc}")
            record.started_at = self.clock()
        else:
            # Up from when it is healthy: a slow start does not count as a stable run.
            record.started_at = self.clock()
            record.restarts += 1
            self.say(f"{name} restarted (restart {record.restarts})")
        record.starting = False

    def _backend_died(self, name: str) -> str:
        code = self.stack.exit_code(name)
        how = "" if code is None else f" with code {code}"
        what = (
            "the embedded broker keeps events in memory only, so every event it held is gone"
            if name == "broker"
            else "the embedded Redis runs without persistence, so all per-user state is gone"
        )
        return (
            f"{name} exited{how}: {what}, and no restart can bring it back. Stopped the whole "
            f"stack; start it again with `botify up`. Log: {self.stack.log_path(name)}"
        )

    def _guard_broker_memory(self) -> None:
        bound_mb = self.settings.broker_max_memory_mb
        if not bound_mb:
            return
        rss = self.stack.resident_bytes("broker")
        if rss is not None and rss > bound_mb * 2**20:
            raise BrokerMemoryError(
                f"the embedded broker holds {rss / 2**20:,.0f} MB, past "
                f"BOTIFY_EMBEDDED__BROKER_MAX_MEMORY_MB={bound_mb}: its memory engine keeps "
                "every event and honours no retention. Stopped the stack before the kernel's "
                "OOM killer would; raise the bound, or run a real Kafka (README) for long runs."
            )
