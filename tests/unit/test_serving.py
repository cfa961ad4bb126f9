"""Router: the request it builds for a recommender and the version it reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from botify.experiments import ExperimentPlan
from botify.recommenders import Recommendation, RecommendRequest
from botify.serving import Router, session_order
from botify.session_log import SessionLog
from botify.state import UserState
from tests.factories import small_catalog

CATALOG = small_catalog()


@pytest.mark.parametrize(
    ("served", "track", "session"),
    [
        ((), 3, (3,)),  # the session's first request: its track is the start
        ((3, 5, 5, 8, 8), 8, (3, 5, 8)),  # each played answer is listed twice
        ((3, 5, 5, 8), 8, (3, 5, 8)),
        ((3, 5), 9, (3, 5, 9)),  # the client played something else than the answer
        ((3, 5, 5, 8), 5, (3, 8, 5)),  # the request's track always comes last
    ],
)
def test_session_order_is_distinct_start_first_request_track_last(
    served: tuple[int, ...], track: int, session: tuple[int, ...]
) -> None:
    assert session_order(served, track) == session


@dataclass
class Recording:
    name: str = "recording"
    requests: list[RecommendRequest] = field(default_factory=list)

    version: int | None = None

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        self.requests.append(request)
        return Recommendation(42, self.version)


def router(recommender: Recording) -> Router:
    return Router(CATALOG, ExperimentPlan((), "rec"), {"rec": recommender})


def test_router_passes_the_ordered_session_and_the_played_set() -> None:
    rec = Recording()
    router(rec).next_track(1, 8, 0.4, UserState(1), SessionLog((3, 5, 5, 8)))
    (request,) = rec.requests
    assert request.session == (3, 5, 8)
    assert request.played == frozenset({3, 5, 8})
    assert (request.user, request.track, request.time) == (1, 8, 0.4)


def test_router_reports_the_version_returned_with_the_track() -> None:
    decision = router(Recording(version=7)).next_track(
        1, 8, 0.4, UserState(1), SessionLog((3, 5, 5, 8))
    )
    assert (decision.track, decision.model_version) == (42, 7)


def test_router_reports_no_version_for_a_model_free_recommender() -> None:
    decision = router(Recording()).next_track(1, 8, 0.4, UserState(1))
    assert (decision.track, decision.model_version) == (42, None)


def test_router_hands_the_recommender_every_listen_of_the_session_its_own_last() -> None:
    class Recording:
        name = "random"
        seen: RecommendRequest | None = None

        def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
            Recording.seen = request
            return Recommendation(2)

    log = SessionLog((3, 5, 5, 8), ((3, 1.0), (5, 0.75)))
    router(Recording()).next_track(1, 8, 0.4, UserState(1), log)
    assert Recording.seen is not None
    assert Recording.seen.listens == ((3, 1.0), (5, 0.75), (8, 0.4))
