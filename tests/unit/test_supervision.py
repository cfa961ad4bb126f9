"""``botify up``'s supervisor: restarts with backoff, stops on a dead backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from botify.errors import BackendUnavailableError
from botify.settings import EmbeddedSettings
from botify_cli.supervision import (
    BackendDiedError,
    Backoff,
    BrokerMemoryError,
    Supervisor,
)

pytestmark = pytest.mark.unit


@dataclass
class FakeStack:
    """The parts of EmbeddedStack the supervisor uses."""

    exited: dict[str, int] = field(default_factory=dict)
    # Respawns whose child dies before it is healthy.
    fail_restarts: int = 0
    # Respawned children and the checks each still needs before it is healthy.
    starting: dict[str, int] = field(default_factory=dict)
    slow_starts: dict[str, int] = field(default_factory=dict)
    restarted: list[str] = field(default_factory=list)
    broker_rss: int | None = 100 * 2**20

    def dead(self) -> list[str]:
        return list(self.exited)

    def exit_code(self, name: str) -> int | None:
        return self.exited.get(name)

    def log_path(self, name: str) -> Path:
        return Path(f"/logs/{name}.log")

    def respawn(self, name: str) -> None:
        del self.exited[name]
        self.starting[name] = self.slow_starts.get(name, 0)

    def ready(self, name: str) -> bool:
        if self.fail_restarts:
            self.fail_restarts -= 1
            del self.starting[name]
            self.exited[name] = 1
            raise BackendUnavailableError(f"{name} did not become ready")
        if self.starting[name]:
            self.starting[name] -= 1
            return False
        del self.starting[name]
        self.restarted.append(name)
        return True

    def resident_bytes(self, name: str) -> int | None:
        assert name == "broker"
        return self.broker_rss


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(stack: FakeStack, clock: Clock, **settings: float) -> tuple[Supervisor, list[str]]:
    said: list[str] = []
    config = EmbeddedSettings(restart_backoff_s=1, restart_backoff_max_s=8, **settings)
    return Supervisor(stack, config, say=said.append, clock=clock), said  # type: ignore[arg-type]


def test_backoff_doubles_from_the_first_delay_up_to_the_bound() -> None:
    backoff = Backoff(first_s=1, max_s=8)
    assert [backoff.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_a_crashed_service_is_restarted_after_the_backoff_not_before() -> None:
    stack, clock = FakeStack(exited={"stream-1": -9}), Clock()
    sup, said = supervisor(stack, clock)
    sup.check()
    assert stack.restarted == []
    assert "stream-1 exited with code -9; restarting it in 1 s" in said[0]
    clock.now += 0.5
    sup.check()
    assert stack.restarted == []
    clock.now += 0.6
    sup.check()
    assert stack.restarted == ["stream-1"]
    assert sup.records["stream-1"].restarts == 1


def test_crashes_in_a_row_back_off_longer_and_a_stable_run_resets_the_backoff() -> None:
    stack, clock = FakeStack(), Clock()
    sup, said = supervisor(stack, clock, restart_stable_s=60)
    delays = []
    for _ in range(4):  # crashes 2 s after each start: never stable
        stack.exited["trainer"] = 1
        sup.check()
        delays.append(sup.records["trainer"].restart_at - clock.now)  # type: ignore[operator]
        clock.now += delays[-1]
        sup.check()
        clock.now += 2
    assert delays == [1, 2, 4, 8]
    clock.now += 120  # stayed up past restart_stable_s
    stack.exited["trainer"] = 1
    sup.check()
    assert sup.records["trainer"].restart_at - clock.now == 1  # type: ignore[operator]
    assert sup.records["trainer"].crashes_in_a_row == 1


def test_a_restart_that_does_not_become_healthy_is_retried_with_more_backoff() -> None:
    stack, clock = FakeStack(exited={"api": 1}, fail_restarts=1), Clock()
    sup, said = supervisor(stack, clock)
    sup.check()
    clock.now += 1
    sup.check()  # the restart fails: the child is still dead
    assert stack.restarted == []
    assert any("did not come back" in line for line in said)
    sup.check()  # scheduled again, now 2 s away
    assert sup.records["api"].restart_at == clock.now + 2
    clock.now += 2
    sup.check()
    assert stack.restarted == ["api"]


@pytest.mark.parametrize(
    ("backend", "says"), [("broker", "in memory only"), ("redis", "without persistence")]
)
def test_a_dead_backend_stops_the_stack_with_one_clear_message(backend: str, says: str) -> None:
    stack, clock = FakeStack(exited={backend: -9, "api": 1}), Clock()
    sup, _ = supervisor(stack, clock)
    with pytest.raises(BackendDiedError, match=says) as caught:
        sup.check()
    assert f"{backend} exited with code -9" in str(caught.value)
    assert "botify up" in str(caught.value)
    assert stack.restarted == []


def test_the_broker_past_its_memory_bound_stops_the_stack() -> None:
    stack, clock = FakeStack(broker_rss=600 * 2**20), Clock()
    sup, _ = supervisor(stack, clock, broker_max_memory_mb=512)
    with pytest.raises(BrokerMemoryError, match="BROKER_MAX_MEMORY_MB=512"):
        sup.check()
    off, _ = supervisor(stack, clock, broker_max_memory_mb=0)
    off.check()  # 0 turns the guard off


def test_a_restart_getting_healthy_is_polled_while_the_other_children_are_watched() -> None:
    # An API instance that takes three checks to answer its health URL: meanwhile a stream
    # worker's crash is restarted, and the broker's death is seen at the very next check.
    stack, clock = FakeStack(exited={"api": 1}, slow_starts={"api": 3}), Clock()
    sup, said = supervisor(stack, clock)
    sup.check()
    clock.now += 1
    sup.check()  # respawned; not healthy yet
    assert sup.records["api"].starting and stack.restarted == []
    stack.exited["stream-1"] = -9
    sup.check()
    clock.now += 1
    sup.check()
    assert stack.restarted == ["stream-1"]
    assert sup.records["api"].starting
    sup.check()
    assert stack.restarted == ["stream-1", "api"]
    assert not sup.records["api"].starting and sup.records["api"].restarts == 1
    assert "api restarted (restart 1)" in said
    stack.exited["api"] = 1
    sup.check()
    clock.now += 2
    sup.check()  # respawned again, polled from now on
    stack.exited["broker"] = -9
    with pytest.raises(BackendDiedError):
        sup.check()


def test_a_slow_start_then_a_quick_crash_does_not_reset_the_backoff() -> None:
    # Healthy 9 s after its respawn, crashed 2 s later: up for 2 s, not for 11.
    stack, clock = FakeStack(exited={"api": 1}, slow_starts={"api": 9}), Clock()
    sup, _ = supervisor(stack, clock, restart_stable_s=10)
    sup.check()
    clock.now += 1
    sup.check()  # respawned
    for _ in range(9):
        clock.now += 1
        sup.check()
    assert stack.restarted == ["api"]
    clock.now += 2
    stack.exited["api"] = 1
    sup.check()
    assert sup.records["api"].crashes_in_a_row == 2
    assert sup.records["api"].restart_at == clock.now + 2
