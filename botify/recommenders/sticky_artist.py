"""StickyArtist: a random unplayed track by the previous track's artist."""

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
class StickyArtist:
    context: RecommenderContext
    name: str = "sticky_artist"

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        rng = request_rng(self.context.seed, request, self.name)
        catalog = self.context.catalog
        track = catalog.by_id.get(request.track)
        if track is not None:
            pick = pick_unplayed(catalog.tracks_by_artist(track.artist), request.played, rng)
            if pick is not None:
                return recommendation(pick)
        # The artist is exhausted for this session: fall back to Random.
        return recommendation(pick_any(catalog, request.played, rng))
