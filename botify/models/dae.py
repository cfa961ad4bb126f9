"""Seed 002's Mult-DAE: a denoising autoencoder over each user's listens."""

from __future__ import annotations

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import relevance_order
from botify.recommenders.sources import UserTop


def dae(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The user's top k tracks in relevance order."""
    source = UserTop(context.slot("dae"), context.catalog, limit=params.settings.dae_k)
    return ModelRecommender(context, "dae", (source,), relevance_order(), fallback)


MODEL = LearnedModel(
    "dae",
    trainer="services.trainer.models.dae:MultDAE",
    hyper_params=lambda s: s.dae,
    recipes=(Recipe("dae", ("dae",), dae),),
)
register(MODEL)
