"""Seed 001's cascade: a serving recipe over three models registered elsewhere."""

from __future__ import annotations

from botify.models.registry import Recipe, register_recipe
from botify.recommenders.anchors import LikedAnchor
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import fail_cascade
from botify.recommenders.sources import Neighbours, UserTop


def cascade(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """LightGCN's user top, then LightFM's, then next_track's neighbours of the last liked
    track, moving down after each run of failed listens."""
    s, catalog = params.settings, context.catalog
    sources = (
        UserTop(context.slot("lightgcn"), catalog),
        UserTop(context.slot("lightfm"), catalog),
        Neighbours(context.slot("next_track"), LikedAnchor(s.liked_threshold), catalog),
    )
    policy = fail_cascade(s.cascade_fail_run, s.cascade_sample_first, params.fail_threshold)
    return ModelRecommender(context, "cascade", sources, policy, fallback)


register_recipe(Recipe("cascade", ("lightgcn", "lightfm", "next_track"), cascade))
