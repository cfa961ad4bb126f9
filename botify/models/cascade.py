"""Seed 001's cascade: a serving recipe over three models registered elsewhere."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from botify.models.registry import Recipe, register_recipe
from botify.recommenders.anchors import LikedAnchor
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import fail_cascade
from botify.recommenders.sources import Neighbours, UserTop


class CascadeServing(BaseModel):
    """BOTIFY_RECOMMENDER__CASCADE__*: move to the next candidate source after ``fail_run``
    consecutive failed listens (below state.fail_threshold), sampling among the first
    ``sample_first`` unplayed items."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fail_run: int = Field(default=2, ge=1)
    sample_first: int = Field(default=15, ge=1)


def cascade(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """LightGCN's user top, then LightFM's, then next_track's neighbours of the last liked
    track, moving down after each run of failed listens."""
    own, catalog = params.section(CascadeServing, "cascade"), context.catalog
    liked = LikedAnchor(params.settings.liked_threshold)
    sources = (
        UserTop(context.slot("lightgcn"), catalog),
        UserTop(context.slot("lightfm"), catalog),
        Neighbours(context.slot("next_track"), liked, catalog),
    )
    policy = fail_cascade(own.fail_run, own.sample_first, params.fail_threshold)
    return ModelRecommender(context, "cascade", sources, policy, fallback)


register_recipe(Recipe("cascade", ("lightgcn", "lightfm", "next_track"), cascade, CascadeServing))
