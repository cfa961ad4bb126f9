"""The course's Contextual model: a neighbour list per session-start track."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.anchors import prev_anchor, start_anchor
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import top_k_random
from botify.recommenders.ranking import Ranking
from botify.recommenders.sources import Neighbours
from botify.settings import ModelHyperParams


def contextual(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Uniform among the previous track's first k unplayed neighbours; when the model has no
    list for the previous track, among the session's start track's.

    The model learns from (session start, later track) pairs, so it knows as contexts only
    the tracks that started sessions, while most previous tracks never did (about 70 % of
    requests in the fidelity check, docs/calibration.md). The course's service still
    answered them from the model: it exported a list for every catalog row, the untrained
    ones included. Ours has no such list; the start track is the context it was trained on
    for this very session, and its list stays the model's answer."""
    slot = context.slot("contextual")
    sources = (
        Neighbours(slot, prev_anchor, context.catalog),
        Neighbours(slot, start_anchor, context.catalog),
    )
    policy = top_k_random(params.section(ContextualServing, "contextual").k)
    return ModelRecommender(context, "contextual", sources, policy, fallback)


class ContextualServing(BaseModel):
    """BOTIFY_RECOMMENDER__CONTEXTUAL__*."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Uniform among the first k unplayed neighbours of the previous track.
    k: int = Field(default=100, ge=1)


class ContextualParams(ModelHyperParams):
    """BOTIFY_TRAINER__CONTEXTUAL__*: trained one round out of two (the trainer shares the
    machine; the best-serving model, affinity, trains every round)."""

    every_rounds: int = Field(default=2, ge=1)


MODEL = LearnedModel(
    "contextual",
    evaluated_by=Ranking.NEIGHBOURS,
    trainer="services.trainer.models.contextual:Contextual",
    rank=1,
    params=ContextualParams,
    recipes=(Recipe("contextual", ("contextual",), contextual, ContextualServing),),
)
register(MODEL)
