"""A recommender that serves trained models: a policy over candidate sources, with a
model-free fallback; its answer carries the version that made it (None: the fallback did:
cold start, or an anchor/user the model does not know)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from botify.errors import ConfigError
from botify.recommenders.base import (
    Recommendation,
    Recommender,
    RecommenderContext,
    RecommendRequest,
    request_rng,
)
from botify.recommenders.policies import CandidateSource, Pick, Policy
from botify.settings import RecommenderSettings, StateSettings
from botify.state import UserState


@dataclass(frozen=True)
class ModelRecommender:
    """A serving policy over candidate sources, with a model-free ``fallback`` for when no
    source answers. Stateless: the version travels with each answer."""

    context: RecommenderContext
    name: str
    sources: tuple[CandidateSource, ...]
    policy: Policy
    fallback: Recommender

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        """The track and the model version that served it (None: the fallback did)."""
        rng = request_rng(self.context.seed, request, self.name)
        pick: Pick | None = self.policy.choose(self.sources, request, state, rng)
        # The fallback's answer carries no version: it needs no model.
        return self.fallback.recommend(request, state) if pick is None else pick


@dataclass(frozen=True)
class ServingParams:
    """The factories' parameters: ``RecommenderSettings`` plus the stream's fail threshold."""

    settings: RecommenderSettings
    fail_threshold: float

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ServingParams:
        """Validated, with the settings' defaults for anything missing; other keys ignored."""
        known = {k: v for k, v in params.items() if k in RecommenderSettings.model_fields}
        try:
            settings = RecommenderSettings.model_validate(known)
            state = StateSettings.model_validate(
                {"fail_threshold": params["fail_threshold"]} if "fail_threshold" in params else {}
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid recommender parameters: {exc}") from None
        return cls(settings, state.fail_threshold)
