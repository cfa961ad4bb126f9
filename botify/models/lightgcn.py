"""LightGCN (seed 001's first source): served only through the cascade (``cascade``)."""

from __future__ import annotations

from pydantic import Field

from botify.models.registry import LearnedModel, register
from botify.recommenders.ranking import Ranking
from botify.settings import ModelHyperParams


class LightGcnHyperParams(ModelHyperParams):
    """BOTIFY_TRAINER__LIGHTGCN__*."""

    every_rounds: int = Field(default=2, ge=1)
    epochs: int = Field(default=10, ge=1)
    lr: float = Field(default=0.01, gt=0)
    l2: float = Field(default=1e-4, ge=0)
    layers: int = Field(default=2, ge=0)


MODEL = LearnedModel(
    "lightgcn",
    evaluated_by=Ranking.USER_TOP,
    trainer="services.trainer.models.lightgcn:LightGCN",
    rank=4,
    params=LightGcnHyperParams,
)
register(MODEL)
