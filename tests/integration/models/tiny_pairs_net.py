"""The torch half of ``tiny_pairs``: one vector per track, ⟨v(c), v(t)⟩ fitted by MSE to the
listen time of (previous track, track) pairs; each track's neighbours are its best dot
products. Imported by the trainer only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import TRACK_EMB, TRACK_IDS, TRACK_NEIGHBOURS
from botify.settings import ModelHyperParams
from services.trainer.models.dataset import Dataset, context_pairs, copy_rows
from services.trainer.ranking import Ranker, host, neighbour_lists


class TinyPairs(nn.Module):
    objective = "pointwise"

    def __init__(self, tracks: int, dim: int) -> None:
        super().__init__()
        self.vector = nn.Embedding(tracks, dim, sparse=True)
        nn.init.normal_(self.vector.weight, std=0.1)

    @classmethod
    def build(cls, data: Dataset, params: ModelHyperParams) -> TinyPairs:
        return cls(data.n_tracks, params.dim)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        return context_pairs(data)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        score = (self.vector(batch["context"]) * self.vector(batch["track"])).sum(1)
        return nn.functional.mse_loss(score, batch["time"])

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        return copy_rows(self.vector.weight, data.track_ids, parent, TRACK_IDS, TRACK_EMB)

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        vectors = self.vector.weight.detach()
        rows = np.arange(data.n_tracks)
        neighbours = neighbour_lists(
            ranker,
            queries=vectors,
            exact_rows=rows,
            items=vectors,
            item_rows=rows,
            track_ids=data.track_ids,
        )
        return {TRACK_IDS: data.track_ids, TRACK_NEIGHBOURS: neighbours, TRACK_EMB: host(vectors)}
