"""A tiny learned recommender, added as README "Adding a model" shows: this file (the
serving half, torch-free) and ``tiny_pairs_net.py`` (the torch half), registered on the last
line. Loaded as a plugin (``BOTIFY_MODELS__PLUGINS``) by the test that proves the recipe."""

from __future__ import annotations

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.anchors import prev_anchor
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import top_k_random
from botify.recommenders.sources import Neighbours

NAME = "tiny_pairs"


def tiny_pairs(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Uniform among the previous track's first ten unplayed neighbours."""
    source = Neighbours(context.slot(NAME), prev_anchor, context.catalog)
    return ModelRecommender(context, NAME, (source,), top_k_random(10), fallback)


register(LearnedModel(NAME, f"{__package__}.tiny_pairs_net:TinyPairs", recipes=(Recipe(NAME, (NAME,), tiny_pairs),)))  # fmt: skip
