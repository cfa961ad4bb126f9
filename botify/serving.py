"""What ``/next`` decides, as a pure function: which arm, which recommender, which track."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from botify.catalog import Catalog
from botify.errors import UnknownTrackError
from botify.experiments import Assignment, ExperimentPlan
from botify.recommenders import Recommender, RecommendRequest
from botify.session_log import SessionLog
from botify.state import UserState


@dataclass(frozen=True, slots=True)
class Decision:
    track: int
    assignment: Assignment
    model_version: int | None = None


@dataclass(frozen=True)
class Router:
    """Routes a user to their arm's recommender and asks it for the next track."""

    catalog: Catalog
    plan: ExperimentPlan
    recommenders: Mapping[str, Recommender]

    def check_track(self, track: int) -> None:
        if track not in self.catalog.by_id:
            raise UnknownTrackError(track)

    def next_track(
        self, user: int, track: int, time: float, state: UserState, log: SessionLog = SessionLog()
    ) -> Decision:
        """``log`` is the API's own record of this session: it is up to date even when the
        stream processor has not caught up, so no track repeats within a session and the
        recommender sees every listen."""
        self.check_track(track)
        assignment = self.plan.assign(user)
        recommender = self.recommenders[assignment.recommender]
        session = session_order(log.tracks, track)
        request = RecommendRequest(
            user, track, time, frozenset(session), session, (*log.listens, (track, time))
        )
        # The version comes back with the track: exact even if requests interleave.
        track, version = recommender.recommend(request, state)
        return Decision(track, assignment, version)


def session_order(served: tuple[int, ...], track: int) -> tuple[int, ...]:
    """The session's distinct tracks in order, the start first and ``track`` last.

    ``served`` lists each request's track and its answer, so every answer the user went on
    to play appears twice."""
    order = dict.fromkeys(served)
    order.pop(track, None)
    order[track] = None
    return tuple(order)
