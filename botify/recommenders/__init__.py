"""The explicit recommender registry: arms name recommenders by these keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from botify.catalog import Catalog, Track
from botify.errors import ConfigError, UnknownRecommenderError
from botify.recommenders.base import (
    Popularity,
    Recommender,
    RecommenderContext,
    RecommendRequest,
)
from botify.recommenders.model_based import MODEL_RECOMMENDERS, ModelFactory, ServingParams
from botify.recommenders.random import Random
from botify.recommenders.sticky_artist import StickyArtist
from botify.recommenders.top_pop import TopPop

RecommenderFactory = Callable[[RecommenderContext, dict[str, object]], Recommender]

REGISTRY: dict[str, RecommenderFactory] = {
    "random": lambda ctx, params: Random(ctx),
    "top_pop": lambda ctx, params: TopPop(ctx, k=int(params.get("top_pop_k", 100))),  # type: ignore[call-overload]
    "sticky_artist": lambda ctx, params: StickyArtist(ctx),
}


def _model_based(name: str, build: ModelFactory) -> RecommenderFactory:
    def factory(context: RecommenderContext, params: dict[str, object]) -> Recommender:
        parsed = ServingParams.parse(params)
        fallback = parsed.settings.model_fallback
        # A fallback that needs a model could itself be cold, or recurse into this one.
        if fallback in MODEL_RECOMMENDERS:
            raise ConfigError(
                f"model_fallback {fallback!r} of {name!r} needs a model itself; "
                f"use a model-free recommender ({', '.join(sorted(_MODEL_FREE))})"
            )
        return build(context, parsed, build_recommender(fallback, context, params))

    return factory


_MODEL_FREE = frozenset(REGISTRY)
REGISTRY.update({name: _model_based(name, build) for name, build in MODEL_RECOMMENDERS.items()})


def build_recommender(
    name: str, context: RecommenderContext, params: dict[str, object] | None = None
) -> Recommender:
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise UnknownRecommenderError(
            f"unknown recommender {name!r}; known: {', '.join(REGISTRY)}"
        ) from None
    return factory(context, params or {})


def model_readers(names: Iterable[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Which of ``names`` (default: every registered recommender) read each trained model.
    Building a recommender on a blank context shows the model slots it asks for."""
    out: dict[str, list[str]] = {}
    for name in sorted(set(REGISTRY if names is None else names)):
        context = RecommenderContext(catalog=Catalog((Track(0, "-", "-"),)))
        build_recommender(name, context)
        for model in context.models:
            out.setdefault(model, []).append(name)
    return {model: tuple(readers) for model, readers in out.items()}


__all__ = [
    "REGISTRY",
    "Popularity",
    "RecommendRequest",
    "Recommender",
    "RecommenderContext",
    "build_recommender",
    "model_readers",
]
