"""TopPop: uniform over the k tracks with the most listen time (kept by the stream processor)."""

from __future__ import annotations

from dataclasses import dataclass

from botify.recommenders.base import (
    Recommendation,
    RecommenderContext,
    RecommendRequest,
    pick_any,
    pick_unplayed,
    recommendation,
    request_rng,
)
from botify.state import UserState


@dataclass
class TopPop:
    context: RecommenderContext
    k: int = 100
    name: str = "top_pop"

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        rng = request_rng(self.context.seed, request, self.name)
        top = self.context.popularity.top[: self.k]
        pick = pick_unplayed(top, request.played, rng)
        # Cold start (no popularity yet) or every top track played: fall back to Random.
        if pick is None:
            pick = pick_any(self.context.catalog, request.played, rng)
        return recommendation(pick)
