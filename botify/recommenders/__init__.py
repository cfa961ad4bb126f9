"""Build a recommender by name: the model-free baselines here, the learned recommenders'
recipes from ``botify.models`` (the one registry of models); arms name them by these keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from botify.errors import ConfigError, UnknownRecommenderError
from botify.recommenders.base import (
    Popularity,
    Recommendation,
    Recommender,
    RecommenderContext,
    RecommendRequest,
)
from botify.recommenders.model_recommender import ServingParams
from botify.recommenders.random import Random
from botify.recommenders.sticky_artist import StickyArtist
from botify.recommenders.top_pop import TopPop

RecommenderFactory = Callable[[RecommenderContext, dict[str, object]], Recommender]

# The recommenders that need no model (a learned one's fallback is one of them).
BASELINES: dict[str, RecommenderFactory] = {
    "random": lambda ctx, params: Random(ctx),
    "top_pop": lambda ctx, params: TopPop(ctx, k=int(params.get("top_pop_k", 100))),  # type: ignore[call-overload]
    "sticky_artist": lambda ctx, params: StickyArtist(ctx),
}


def recommender_names() -> tuple[str, ...]:
    """Every name an arm may use: the baselines, then the registered recipes."""
    # Imported here, not at the top: the model modules build on this package's modules.
    from botify.models import RECIPES

    return (*BASELINES, *RECIPES)


def build_recommender(
    name: str, context: RecommenderContext, params: dict[str, object] | None = None
) -> Recommender:
    """The recommender ``name`` over ``context``, with the serving ``params`` (the
    ``RecommenderSettings`` fields and the stream's ``fail_threshold``; defaults for the rest)."""
    params = params or {}
    baseline = BASELINES.get(name)
    if baseline is not None:
        return baseline(context, params)
    from botify.models import RECIPES

    recipe = RECIPES.get(name)
    if recipe is None:
        raise UnknownRecommenderError(
            f"unknown recommender {name!r}; known: {', '.join(recommender_names())}"
        )
    parsed = ServingParams.parse(params)
    fallback = parsed.settings.model_fallback
    if fallback not in BASELINES and fallback not in RECIPES:
        raise ConfigError(
            f"model_fallback {fallback!r} of {name!r}: unknown recommender; use a model-free "
            f"one ({', '.join(sorted(BASELINES))})"
        )
    # A fallback that needs a model could itself be cold, or recurse into this one.
    if fallback not in BASELINES:
        raise ConfigError(
            f"model_fallback {fallback!r} of {name!r} needs a model itself; "
            f"use a model-free recommender ({', '.join(sorted(BASELINES))})"
        )
    return recipe.build(context, parsed, build_recommender(fallback, context, params))


def model_readers(names: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Model -> which of ``names`` (default: every registered recommender) serve it, from the
    recipes' declared reads (``botify.models``)."""
    from botify.models import model_readers as readers

    return readers(names)


__all__ = [
    "BASELINES",
    "Popularity",
    "RecommendRequest",
    "Recommendation",
    "Recommender",
    "RecommenderContext",
    "build_recommender",
    "model_readers",
    "recommender_names",
]
