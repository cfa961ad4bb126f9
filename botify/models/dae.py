"""Seed 002's Mult-DAE: a denoising autoencoder over each user's listens."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import relevance_order
from botify.recommenders.ranking import Ranking
from botify.recommenders.sources import UserTop
from botify.settings import ModelHyperParams


def dae(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The user's top k tracks in relevance order."""
    k = params.section(DaeServing, "dae").k
    source = UserTop(context.slot("dae"), context.catalog, limit=k)
    return ModelRecommender(context, "dae", (source,), relevance_order(), fallback)


class DaeServing(BaseModel):
    """BOTIFY_RECOMMENDER__DAE__*."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The user's top k tracks, served in relevance order.
    k: int = Field(default=50, ge=1)


class DaeHyperParams(ModelHyperParams):
    """BOTIFY_TRAINER__DAE__*."""

    dim: int = Field(default=64, ge=1)  # the hidden layer
    every_rounds: int = Field(default=2, ge=1)
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    # On the whole encoder and decoder, not per batch.
    l2: float = Field(default=1e-5, ge=0)
    # Input dropout of the denoising autoencoder (Liang et al. use 0.5).
    dropout: float = Field(default=0.5, ge=0.0, lt=1.0)


MODEL = LearnedModel(
    "dae",
    evaluated_by=Ranking.USER_TOP,
    trainer="services.trainer.models.dae:MultDAE",
    rank=3,
    params=DaeHyperParams,
    recipes=(Recipe("dae", ("dae",), dae, DaeServing),),
)
register(MODEL)
