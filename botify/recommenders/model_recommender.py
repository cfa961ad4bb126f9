"""A recommender that serves trained models: a policy over candidate sources, with a
model-free fallback; its answer carries the version that made it (None: the fallback did:
cold start, or an anchor/user the model does not know)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel, ValidationError

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

Section = TypeVar("Section", bound=BaseModel)


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
    """The recipes' parameters: the shared ``RecommenderSettings``, the stream's fail
    threshold, and every recipe's own section (``section``)."""

    settings: RecommenderSettings
    fail_threshold: float
    raw: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ServingParams:
        """Validated, with the settings' defaults for anything missing; other keys are
        left to the recipes' sections."""
        known = {k: v for k, v in params.items() if k in RecommenderSettings.model_fields}
        try:
            settings = RecommenderSettings.model_validate(known)
            state = StateSettings.model_validate(
                {"fail_threshold": params["fail_threshold"]} if "fail_threshold" in params else {}
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid recommender parameters: {exc}") from None
        return cls(settings, state.fail_threshold, params)

    def section(self, cls: type[Section], name: str, legacy_prefix: str | None = None) -> Section:
        """Recipe ``name``'s section, validated by ``cls`` over its defaults: from
        ``BOTIFY_RECOMMENDER__<NAME>__<FIELD>`` (or the section as JSON), and from the flat
        names these knobs had before they moved into their recipes,
        ``BOTIFY_RECOMMENDER__<PREFIX><FIELD>`` (prefix ``<name>_`` unless given)."""
        prefix = f"{name}_" if legacy_prefix is None else legacy_prefix
        values = {
            key[len(prefix) :]: value
            for key, value in self.raw.items()
            if key.startswith(prefix) and key[len(prefix) :] in cls.model_fields
        }
        own = self.raw.get(name, {})
        try:
            if isinstance(own, str):
                own = json.loads(own)
            if isinstance(own, BaseModel):
                own = own.model_dump(exclude_unset=True)
            if not isinstance(own, Mapping):
                raise ValueError(f"expected a mapping of settings, got {own!r}")
            return cls.model_validate({**values, **own})
        except ValueError as exc:  # pydantic's ValidationError and JSON's errors included
            raise ConfigError(f"invalid parameters of recommender {name!r}: {exc}") from None
