"""The explicit recommender registry: arms name recommenders by these keys."""

from __future__ import annotations

from collections.abc import Callable

from botify.errors import UnknownRecommenderError
from botify.recommenders.base import (
    Popularity,
    Recommender,
    RecommenderContext,
    RecommendRequest,
)
from botify.recommenders.random import Random
from botify.recommenders.sticky_artist import StickyArtist
from botify.recommenders.top_pop import TopPop

RecommenderFactory = Callable[[RecommenderContext, dict[str, object]], Recommender]

REGISTRY: dict[str, RecommenderFactory] = {
    "random": lambda ctx, params: Random(ctx),
    "top_pop": lambda ctx, params: TopPop(ctx, k=int(params.get("top_pop_k", 100))),  # type: ignore[call-overload]
    "sticky_artist": lambda ctx, params: StickyArtist(ctx),
}


def build_recommender(
    name: str, context: RecommenderContext, params: dict[str, object] | None = None
) -> Recommender:
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise UnknownRecommenderError(
            f"unknown recommender {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None
    return factory(context, params or {})


__all__ = [
    "REGISTRY",
    "Popularity",
    "RecommendRequest",
    "Recommender",
    "RecommenderContext",
    "build_recommender",
]
