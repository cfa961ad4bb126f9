"""Learned recommenders, one module each (its serving recipes, its hyper-parameters, where
its torch half lives), registered in ``botify.models.registry``.

Importing this package registers the built-in ones, one line each; the trainer trains every
registered model by default, ordered by ``LearnedModel.rank``. It never imports torch.
"""

from __future__ import annotations

from botify.models import affinity, cascade, contextual, dae, lightfm, lightgcn, next_track
from botify.models.registry import (
    MODELS,
    RECIPES,
    LearnedModel,
    Recipe,
    check_sections,
    check_serving,
    default_models,
    first_line,
    hyper_params,
    learned_model,
    load_plugins,
    model_readers,
    register,
    register_recipe,
    trained_models,
)

BUILTIN = (affinity, contextual, next_track, dae, lightgcn, lightfm, cascade)

__all__ = [
    "BUILTIN",
    "MODELS",
    "RECIPES",
    "LearnedModel",
    "Recipe",
    "check_sections",
    "check_serving",
    "default_models",
    "first_line",
    "hyper_params",
    "learned_model",
    "load_plugins",
    "model_readers",
    "register",
    "register_recipe",
    "trained_models",
]
