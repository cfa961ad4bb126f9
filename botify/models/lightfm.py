"""LightFM (seed 001's second source): served only through the cascade (``cascade``)."""

from __future__ import annotations

from pydantic import Field

from botify.models.registry import LearnedModel, register
from botify.recommenders.ranking import Ranking
from botify.settings import ModelHyperParams


class LightFmParams(ModelHyperParams):
    """BOTIFY_TRAINER__LIGHTFM__*: trained one round out of two (the trainer shares the
    machine; the best-serving model, affinity, trains every round)."""

    every_rounds: int = Field(default=2, ge=1)


MODEL = LearnedModel(
    "lightfm",
    evaluated_by=Ranking.USER_TOP,
    trainer="services.trainer.models.lightfm:LightFM",
    rank=5,
    params=LightFmParams,
)
register(MODEL)
