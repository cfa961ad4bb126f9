"""An in-process store with the same semantics as Redis: for unit tests and notebooks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from botify.session_log import SessionLog, encode_request, parse_session
from botify.state import Transition, UserCommit, UserState
from botify.storage.base import commit_transition


class InMemoryUserStateStore:
    def __init__(self) -> None:
        self._states: dict[int, bytes] = {}
        self._sessions: dict[int, list[bytes]] = defaultdict(list)
        self._plays: dict[int, int] = defaultdict(int)
        self._time: dict[int, float] = defaultdict(float)
        self._counters: dict[str, int] = defaultdict(int)

    async def load(self, user: int) -> UserState:
        raw = self._states.get(user)
        return UserState(user) if raw is None else UserState.from_bytes(raw)

    async def load_many(self, users: Sequence[int]) -> dict[int, UserState]:
        return {u: await self.load(u) for u in users}

    async def commit_users(self, commits: Sequence[UserCommit]) -> list[bool]:
        written = []
        for c in commits:
            if (await self.load(c.state.user)).position != c.expected:
                written.append(False)
                continue
            self._states[c.state.user] = c.state.to_bytes()
            for play in c.plays:
                self._plays[play.track] += 1
                self._time[play.track] += play.time
            written.append(True)
        return written

    async def load_for_request(self, user: int) -> tuple[UserState, SessionLog]:
        return await self.load(user), parse_session(self._sessions.get(user, ()))

    async def commit(self, transition: Transition) -> bool:
        return await commit_transition(self, transition)

    async def record_request(self, user: int, track: int, time: float, recommendation: int) -> None:
        self._sessions[user].extend(encode_request(track, time, recommendation))

    async def end_session(self, user: int) -> None:
        self._sessions.pop(user, None)

    async def top_tracks(self, k: int) -> list[int]:
        ranked = sorted(self._time.items(), key=lambda kv: (-kv[1], -kv[0]))
        return [t for t, _ in ranked[:k]]

    async def track_stats(self, track: int) -> tuple[int, float]:
        return self._plays.get(track, 0), self._time.get(track, 0.0)

    async def incr(self, counter: str, amount: int = 1) -> None:
        self._counters[counter] += amount

    async def incr_many(self, counts: Mapping[str, int]) -> None:
        for counter, amount in counts.items():
            self._counters[counter] += amount

    async def counter(self, counter: str) -> int:
        return self._counters.get(counter, 0)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None
