"""Random: uniform over the catalog, never a track already in the session."""

from __future__ import annotations

from dataclasses import dataclass

from botify.recommenders.base import (
    Recommendation,
    RecommenderContext,
    RecommendRequest,
    pick_any,
    recommendation,
    request_rng,
)
from botify.state import UserState


@dataclass
class Random:
    context: RecommenderContext
    name: str = "random"

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        rng = request_rng(self.context.seed, request, self.name)
        return recommendation(pick_any(self.context.catalog, request.played, rng))
