"""The trainer's side of the model registry (``botify.models``): the torch half of each
registered model, imported here and nowhere else.

A model's torch half is a module with ``build`` (from the window's ``Dataset`` and its
hyper-parameters), ``examples`` (the rows its loop batches), ``loss``, ``warm_start`` (from
a parent version's arrays) and ``export`` (to the standard artifact arrays).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from botify.errors import ConfigError
from botify.models import first_line, hyper_params, learned_model
from botify.settings import ModelHyperParams, TrainerSettings
from services.trainer.models.dataset import Dataset
from services.trainer.ranking import Ranker


class TrainableModel(Protocol):
    # "pointwise" (regression on pairs), "bpr" (pairwise ranking), "multinomial" (per user).
    objective: str

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The mean loss of one batch of ``examples`` rows, regularisation included."""

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Seed parameters from a parent version's arrays where shapes allow; rows reused."""

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        """The artifact's arrays (``botify.artifacts``), lists ranked by ``ranker``."""

    # The torch.nn.Module methods the loop uses.
    def parameters(self) -> object: ...
    def modules(self) -> object: ...
    def to(self, device: torch.device) -> object: ...
    def train(self, mode: bool = True) -> object: ...


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[Dataset, ModelHyperParams], TrainableModel]
    examples: Callable[[Dataset], dict[str, np.ndarray]]
    hyper_params: Callable[[TrainerSettings], ModelHyperParams]


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name`` with its torch half imported; ``ConfigError`` lists the
    known ones, or says why the torch half cannot be loaded."""
    model = learned_model(name)
    module, _, attr = model.trainer.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except Exception as exc:  # a plugin's torch half is anyone's code
        raise ConfigError(
            f"model {name!r}: cannot load {model.trainer!r}: {first_line(exc)}"
        ) from None
    return ModelSpec(cls.build, cls.examples, lambda settings: hyper_params(name, settings))


__all__ = ["ModelSpec", "TrainableModel", "model_spec"]
