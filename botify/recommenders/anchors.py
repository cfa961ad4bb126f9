"""Where a model-backed recommender anchors a session: a track chosen from the request and
the (lagging) user state, and the session's listens the anchors read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from botify.errors import ConfigError
from botify.recommenders.base import RecommendRequest
from botify.state import UserState

# Where the session is anchored: a track chosen from the request and the (lagging) state.
Anchor = Callable[[RecommendRequest, UserState], int]


def prev_anchor(request: RecommendRequest, state: UserState) -> int:
    """The track the user just listened to."""
    return request.track


def start_anchor(request: RecommendRequest, state: UserState) -> int:
    """The session's first track."""
    if request.session:
        return request.session[0]
    # Without the API's ordered session, the stream's view; a state that has not seen this
    # session yet means the session is just starting, on the request's track.
    if state.in_session and state.session_start is not None:
        return state.session_start
    return request.track


def session_listens(request: RecommendRequest, state: UserState) -> tuple[tuple[int, float], ...]:
    """The session's (track, fraction listened), oldest first, the request's own listen last
    and the start track first (as a full listen). From the API's record when the request
    has it; else from the stream's (lagging) history: its newest listens back to the start,
    as long as they are tracks of this session. Bounded by the history size."""
    if request.listens:
        return request.listens
    start = start_anchor(request, state)
    if start == request.track:
        return ((start, 1.0),)
    tail: list[tuple[int, float]] = []
    played = request.played
    history = zip(reversed(state.history), reversed(state.history_times), strict=False)
    for track, time in history:
        if track == start or track not in played:
            break
        if track != request.track:
            tail.append((track, time))
    return ((start, 1.0), *reversed(tail), (request.track, request.time))


@dataclass(frozen=True, slots=True)
class LikedAnchor:
    """The most recent session track listened to at least ``threshold``; the start track
    counts as liked, so there always is one."""

    threshold: float

    def __call__(self, request: RecommendRequest, state: UserState) -> int:
        listens = session_listens(request, state)
        for track, time in reversed(listens):
            if time >= self.threshold:
                return track
        return listens[0][0]


def make_anchor(name: str, liked_threshold: float) -> Anchor:
    """``prev``, ``start`` or ``liked``."""
    if name == "prev":
        return prev_anchor
    if name == "start":
        return start_anchor
    if name == "liked":
        return LikedAnchor(liked_threshold)
    raise ConfigError(f"unknown anchor {name!r}; known: liked, prev, start")
