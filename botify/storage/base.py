"""The ``UserStateStore`` protocol shared by the API (reads, session list) and the stream
processor (state commits, popularity)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from botify.session_log import SessionLog
from botify.state import Transition, UserCommit, UserState


class UserStateStore(Protocol):
    async def load(self, user: int) -> UserState:
        """The stream-maintained state, or an empty one for an unknown user."""

    async def load_many(self, users: Sequence[int]) -> dict[int, UserState]:
        """States of several users in one round trip."""

    async def commit_users(self, commits: Sequence[UserCommit]) -> list[bool]:
        """Write each user's folded batch whose stored position is still the expected one,
        with its popularity increments; returns which ones were written. Few round trips
        for the whole batch."""

    async def load_for_request(self, user: int) -> tuple[UserState, SessionLog]:
        """State plus the API's record of the current session, in one round trip."""

    async def commit(self, transition: Transition) -> bool:
        """Atomically store the new state and its popularity increments, unless the stored
        position is as new. Returns whether anything was written."""

    async def record_request(self, user: int, track: int, time: float, recommendation: int) -> None:
        """Append one ``/next`` request's listen and answer to the session record (API side,
        read-your-writes)."""

    async def end_session(self, user: int) -> None:
        """Forget the current-session list (on ``/last``)."""

    async def top_tracks(self, k: int) -> list[int]:
        """The k tracks with the most listen time, most first."""

    async def track_stats(self, track: int) -> tuple[int, float]:
        """(plays, total listen time) of a track."""

    async def incr(self, counter: str, amount: int = 1) -> None: ...

    async def incr_many(self, counts: Mapping[str, int]) -> None:
        """``incr`` of several counters at once; may return before they are applied (later
        commands on the store still see them)."""

    async def counter(self, counter: str) -> int: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


async def commit_transition(store: UserStateStore, transition: Transition) -> bool:
    """``commit`` of one transition, by ``commit_users`` from the state stored now: one
    listen at a time, for tests and tools (the stream commits whole batches)."""
    new = transition.state
    if not transition.applied or new.position is None:
        return False
    current = (await store.load(new.user)).position
    if not new.position.supersedes(current):
        return False
    return (await store.commit_users([UserCommit(new, current, transition.plays)]))[0]
