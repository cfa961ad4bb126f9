"""The students' next-track model (seeds 000/003/004) and its two serving recipes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.anchors import LikedAnchor, prev_anchor
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import artist_diverse, top_k_random
from botify.recommenders.ranking import Ranking
from botify.recommenders.sources import Reranked
from botify.settings import ModelHyperParams


def next_track(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The previous track's neighbours and the user's top tracks, re-ranked for the user,
    uniform among the first k unplayed."""
    source = Reranked(context.slot("next_track"), prev_anchor, context.catalog)
    policy = top_k_random(params.section(NextTrackServing, "next_track").k)
    return ModelRecommender(context, "next_track", (source,), policy, fallback)


def next_track_diverse(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The students' best recipe: anchor on the last liked track, re-rank for the user,
    relevance order without over-playing an artist."""
    own = params.section(DiverseServing, "next_track_diverse", legacy_prefix="diverse_")
    anchor = LikedAnchor(params.settings.liked_threshold)
    source = Reranked(context.slot("next_track"), anchor, context.catalog)
    policy = artist_diverse(own.max_per_artist, context.catalog)
    return ModelRecommender(context, "next_track_diverse", (source,), policy, fallback)


class NextTrackServing(BaseModel):
    """BOTIFY_RECOMMENDER__NEXT_TRACK__*."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Uniform among the first k unplayed re-ranked candidates.
    k: int = Field(default=25, ge=1)


class DiverseServing(BaseModel):
    """BOTIFY_RECOMMENDER__NEXT_TRACK_DIVERSE__* (before: BOTIFY_RECOMMENDER__DIVERSE_*)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An artist played this many times in the session is skipped (simulated users lose
    # 20 % of interest per repeated artist).
    max_per_artist: int = Field(default=2, ge=1)


class NextTrackParams(ModelHyperParams):
    """BOTIFY_TRAINER__NEXT_TRACK__*: trained one round out of two (the trainer shares the
    machine; the best-serving model, affinity, trains every round)."""

    every_rounds: int = Field(default=2, ge=1)


MODEL = LearnedModel(
    "next_track",
    evaluated_by=Ranking.RERANKED,
    trainer="services.trainer.models.next_track:NextTrack",
    rank=2,
    params=NextTrackParams,
    recipes=(
        Recipe("next_track", ("next_track",), next_track, NextTrackServing),
        Recipe(
            "next_track_diverse", ("next_track",), next_track_diverse, DiverseServing, "diverse_"
        ),
    ),
)
register(MODEL)
