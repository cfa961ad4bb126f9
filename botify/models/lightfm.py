"""LightFM (seed 001's second source): served only through the cascade (``cascade``)."""

from __future__ import annotations

from botify.models.registry import LearnedModel, register

MODEL = LearnedModel(
    "lightfm",
    trainer="services.trainer.models.lightfm:LightFM",
    hyper_params=lambda s: s.lightfm,
)
register(MODEL)
