"""LightGCN (seed 001's first source): served only through the cascade (``cascade``)."""

from __future__ import annotations

from botify.models.registry import LearnedModel, register

MODEL = LearnedModel(
    "lightgcn",
    trainer="services.trainer.models.lightgcn:LightGCN",
    hyper_params=lambda s: s.lightgcn,
)
register(MODEL)
