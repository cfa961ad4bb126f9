"""SweptDeadlines: a key not stopped in time expires once; a stopped one never does; the
sweeper runs only while something waits."""

from __future__ import annotations

import asyncio

from services.api.deadlines import SweptDeadlines


async def _settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def test_a_key_not_stopped_in_time_expires_once_and_a_stopped_one_never() -> None:
    expired: list[str] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        deadlines: SweptDeadlines[str] = SweptDeadlines(0.04, expired.append)
        deadlines.start("slow", loop)
        deadlines.start("quick", loop)
        deadlines.stop("quick")
        await _settle(0.2)

    asyncio.run(scenario())
    assert expired == ["slow"]


def test_a_deadline_is_kept_within_a_quarter_of_the_timeout_not_before_it() -> None:
    seen: dict[str, float] = {}

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        deadlines: SweptDeadlines[str] = SweptDeadlines(
            0.08, lambda k: seen.setdefault(k, loop.time())
        )
        started = loop.time()
        deadlines.start("k", loop)
        await _settle(0.3)
        return started

    started = asyncio.run(scenario())
    waited = seen["k"] - started
    # Not before the deadline; the sweep comes within a quarter of the timeout after it
    # (plus the event loop's own slack, generous on a shared machine).
    assert 0.08 <= waited < 0.08 + 0.02 + 0.1


def test_starting_again_moves_the_deadline() -> None:
    expired: list[str] = []

    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        deadlines: SweptDeadlines[str] = SweptDeadlines(0.1, expired.append)
        deadlines.start("k", loop)
        await _settle(0.06)
        deadlines.start("k", loop)  # 0.1 s from now again
        await _settle(0.06)
        early = list(expired)
        await _settle(0.2)
        return early

    early = asyncio.run(scenario())
    assert early == [] and expired == ["k"]


def test_the_sweeper_stops_when_nothing_waits_and_restarts_with_the_next_key() -> None:
    expired: list[str] = []

    async def scenario() -> tuple[bool, bool, bool]:
        loop = asyncio.get_running_loop()
        deadlines: SweptDeadlines[str] = SweptDeadlines(0.04, expired.append)
        deadlines.start("a", loop)
        deadlines.stop("a")
        await _settle(0.05)  # one sweep finds the table empty and does not re-arm
        idle = deadlines._sweeper is None
        deadlines.start("b", loop)
        armed = deadlines._sweeper is not None
        await _settle(0.2)
        return idle, armed, deadlines._sweeper is None

    idle, armed, idle_again = asyncio.run(scenario())
    assert (idle, armed, idle_again) == (True, True, True)
    assert expired == ["b"]
