"""The track-affinity model: one vector per track, neighbour lists within its genre."""

from __future__ import annotations

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import artist_diverse
from botify.recommenders.sources import SessionTaste


def affinity(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Same-genre neighbours of the session's best-liked tracks, ranked by the session's
    taste (``SessionTaste``), in relevance order, one track per artist: what the user loved
    moves the session towards their taste, and a new artist each time avoids the decay
    users show for an artist they already heard (docs/models.md)."""
    s = params.settings
    source = SessionTaste(
        context.slot("affinity"),
        context.catalog,
        s.affinity_session_power,
        s.affinity_session_sources,
    )
    policy = artist_diverse(s.affinity_max_per_artist, context.catalog)
    return ModelRecommender(context, "affinity", (source,), policy, fallback)


MODEL = LearnedModel(
    "affinity",
    trainer="services.trainer.models.affinity:TrackAffinity",
    hyper_params=lambda s: s.affinity,
    recipes=(Recipe("affinity", ("affinity",), affinity),),
)
register(MODEL)
