"""The trainer's explicit model registry: the names settings, artifacts and serving share.

A model is one file: a torch module with ``build`` (from the window's ``Dataset`` and its
hyper-parameters), ``examples`` (the rows its loop batches), ``loss``, ``warm_start`` (from
a parent version's arrays) and ``export`` (to the standard artifact arrays).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from botify.errors import ConfigError
from botify.settings import ModelHyperParams, TrainerSettings
from services.trainer.export import Ranker
from services.trainer.models.affinity import TrackAffinity
from services.trainer.models.contextual import Contextual
from services.trainer.models.dae import MultDAE
from services.trainer.models.dataset import Dataset
from services.trainer.models.lightfm import LightFM
from services.trainer.models.lightgcn import LightGCN
from services.trainer.models.next_track import NextTrack


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


REGISTRY: dict[str, ModelSpec] = {
    "contextual": ModelSpec(Contextual.build, Contextual.examples, lambda s: s.contextual),
    "next_track": ModelSpec(NextTrack.build, NextTrack.examples, lambda s: s.next_track),
    "dae": ModelSpec(MultDAE.build, MultDAE.examples, lambda s: s.dae),  # type: ignore[arg-type]
    "lightgcn": ModelSpec(LightGCN.build, LightGCN.examples, lambda s: s.lightgcn),  # type: ignore[arg-type]
    "lightfm": ModelSpec(LightFM.build, LightFM.examples, lambda s: s.lightfm),
    "affinity": ModelSpec(TrackAffinity.build, TrackAffinity.examples, lambda s: s.affinity),
}


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name``; ``ConfigError`` lists the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


__all__ = ["REGISTRY", "ModelSpec", "TrainableModel", "model_spec"]
