"""The track-affinity model: one vector per track, neighbour lists within its genre."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from botify.models.registry import LearnedModel, Recipe, register
from botify.recommenders.base import Recommender, RecommenderContext
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import artist_diverse
from botify.recommenders.ranking import Ranking
from botify.recommenders.sources import SessionTaste
from botify.settings import ModelHyperParams


class AffinityServing(BaseModel):
    """BOTIFY_RECOMMENDER__AFFINITY__*: one track per artist; candidates from the neighbour
    lists of the session's ``session_sources`` best-liked tracks, ranked by their taste
    weighted by time ** ``session_power``. Tuned on the simulator (docs/models.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_per_artist: int = Field(default=1, ge=1)
    session_power: float = Field(default=16.0, ge=0.0)
    session_sources: int = Field(default=20, ge=1)


def affinity(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Same-genre neighbours of the session's best-liked tracks, ranked by the session's
    taste (``SessionTaste``), in relevance order, one track per artist: what the user loved
    moves the session towards their taste, and a new artist each time avoids the decay
    users show for an artist they already heard (docs/models.md)."""
    own = params.section(AffinityServing, "affinity")
    source = SessionTaste(
        context.slot("affinity"), context.catalog, own.session_power, own.session_sources
    )
    policy = artist_diverse(own.max_per_artist, context.catalog)
    return ModelRecommender(context, "affinity", (source,), policy, fallback)


class AffinityParams(ModelHyperParams):
    """BOTIFY_TRAINER__AFFINITY__*. Tuned on the simulator (docs/models.md): up to ten passes
    over the newest 80,000 examples each round (the 8 s budget allows about four on two
    shared cores: shorter rounds keep it fresh), and an id penalty that keeps rarely heard
    tracks near their artist and genre; fewer passes over a bigger window scored below its
    parent. Promoted on listen-time MSE: its lists are re-filtered by the serving policy."""

    epochs: int = Field(default=10, ge=1)
    lr: float = Field(default=0.02, gt=0)
    l2: float = Field(default=1e-4, ge=0)
    budget_s: float | None = Field(default=8.0, gt=0)
    window_rows: int | None = Field(default=80_000, ge=1)
    promote_on: str | None = "mse"


MODEL = LearnedModel(
    "affinity",
    evaluated_by=Ranking.SESSION_TASTE,
    trainer="services.trainer.models.affinity:TrackAffinity",
    rank=0,
    params=AffinityParams,
    recipes=(Recipe("affinity", ("affinity",), affinity, AffinityServing),),
)
register(MODEL)
