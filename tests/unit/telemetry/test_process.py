from __future__ import annotations

from botify.telemetry import Heartbeat


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_is_healthy_until_its_loop_stalls() -> None:
    clock = Clock()
    beat = Heartbeat(stall_s=30, clock=clock)
    clock.now += 29
    assert beat.healthy() and beat.age() == 29
    clock.now += 2
    assert not beat.healthy()
    beat.beat()
    assert beat.healthy() and beat.age() == 0
