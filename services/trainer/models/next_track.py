"""The students' next-track model (seeds 000, 003, 004): the course's contextual model with a
user embedding and artist/genre embeddings.

score(u, c, t) = ⟨ctx(c) + user[u], trk(t)⟩ + bias(t) + mean, fitted by MSE to the listen time
on (previous track, track) and (session start, track) pairs. A track's vectors are the sum of
an id part and its features (artist, genre): ``ctx(c) = context_id[c] + Σ context_feature``,
``trk(t) = track_id[t] + Σ track_feature``, ``bias(t) = bias_id[t] + Σ bias_feature``. Id parts
start at zero and move only for tracks the data shows, so a track never seen is exactly its
artist and genre: unseen tracks of known artists generalise, as context and as candidate.
The export folds the features in (serving needs only a dot product) and keeps the feature
tables under ``next_track_*`` names, from which a warm start recovers the id parts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import (
    CONTEXT_EMB,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    USER_EMB,
    USER_IDS,
)
from botify.settings import ModelHyperParams
from services.trainer.models.dataset import (
    Dataset,
    context_pairs,
    copy_rows,
    feature_keys,
    match_rows,
    parent_table,
)
from services.trainer.models.parts import (
    catalog_neighbours,
    mean_time,
    ranked_lists,
    sparse_table,
)
from services.trainer.ranking import Ranker, by_frequency, host

INIT_STD = 0.05
FEATURE_KEYS = "next_track_feature_keys"
CONTEXT_FEATURE_EMB = "next_track_context_feature_emb"
TRACK_FEATURE_EMB = "next_track_track_feature_emb"
FEATURE_BIAS = "next_track_feature_bias"
MEAN = "next_track_mean"


class NextTrack(nn.Module):
    objective = "pointwise"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    features: torch.Tensor

    def __init__(self, data: Dataset, dim: int, mean: float, l2: float) -> None:
        super().__init__()
        n, f = data.n_tracks, data.n_features
        self.context_id = sparse_table(n, dim, 0.0)
        self.track_id = sparse_table(n, dim, 0.0)
        self.bias_id = sparse_table(n, 1, 0.0)
        # Row f is the padding of a track without a genre.
        self.context_feature = sparse_table(f + 1, dim, INIT_STD, padding_idx=f)
        self.track_feature = sparse_table(f + 1, dim, INIT_STD, padding_idx=f)
        self.bias_feature = sparse_table(f + 1, 1, 0.0, padding_idx=f)
        self.user = sparse_table(data.n_users, dim, INIT_STD)
        self.register_buffer("features", torch.as_tensor(data.track_features))
        self.feature_names = data.features
        self.mean = mean
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: ModelHyperParams) -> NextTrack:
        return cls(data, params.dim, mean_time(cls.examples(data)), params.l2)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        return context_pairs(data)

    def context_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        return self.context_id(rows) + self.context_feature(self.features[rows]).sum(1)

    def track_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        return self.track_id(rows) + self.track_feature(self.features[rows]).sum(1)

    def track_bias(self, rows: torch.Tensor) -> torch.Tensor:
        feature = self.bias_feature(self.features[rows]).sum(1)
        return (self.bias_id(rows) + feature).squeeze(1) + self.mean

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        c = self.context_vectors(batch["context"])
        u = self.user(batch["user"])
        t = self.track_vectors(batch["track"])
        pred = ((c + u) * t).sum(1) + self.track_bias(batch["track"])
        reg = (c.square().sum(1) + u.square().sum(1) + t.square().sum(1)).mean()
        return nn.functional.mse_loss(pred, batch["time"]) + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Reuse the parent's feature rows (by name), users (by id) and tracks' id parts (by
        id: the parent's folded vectors minus the features); the rest keep a fresh init."""
        dim = self.user.embedding_dim
        keys = parent.get(FEATURE_KEYS)
        ctx_f = parent_table(parent, CONTEXT_FEATURE_EMB, dim)
        trk_f = parent_table(parent, TRACK_FEATURE_EMB, dim)
        bias_f, mean = parent.get(FEATURE_BIAS), parent.get(MEAN)
        if keys is None or ctx_f is None or trk_f is None or bias_f is None or mean is None:
            return 0
        reused = 0
        with torch.no_grad():
            mine, theirs = match_rows(feature_keys(self.feature_names), keys)
            self.context_feature.weight[mine] = torch.as_tensor(ctx_f[theirs])
            self.track_feature.weight[mine] = torch.as_tensor(trk_f[theirs])
            self.bias_feature.weight[mine, 0] = torch.as_tensor(bias_f[theirs].astype(np.float32))
            reused += len(mine)
            reused += copy_rows(self.user.weight, data.user_ids, parent, USER_IDS, USER_EMB)
            ids = parent.get(TRACK_IDS)
            ctx = parent_table(parent, CONTEXT_EMB, dim)
            trk = parent_table(parent, TRACK_EMB, dim)
            bias = parent.get(TRACK_BIAS)
            if ids is None or ctx is None or trk is None or bias is None:
                return reused
            mine, theirs = match_rows(data.track_ids, ids)
            rows = torch.as_tensor(mine)
            fc = self.context_feature(self.features[rows]).sum(1)
            ft = self.track_feature(self.features[rows]).sum(1)
            fb = self.bias_feature(self.features[rows]).sum(1).squeeze(1)
            self.context_id.weight[rows] = torch.as_tensor(ctx[theirs]) - fc
            self.track_id.weight[rows] = torch.as_tensor(trk[theirs]) - ft
            b = torch.as_tensor(bias[theirs].astype(np.float32)) - float(mean[0]) - fb
            self.bias_id.weight[rows, 0] = b
            reused += len(mine)
        return reused

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        n = data.n_tracks
        ex = self.examples(data)
        with torch.no_grad():
            rows = torch.arange(n, device=self.features.device)
            context = self.context_vectors(rows)
            feature_context = self.context_feature(self.features).sum(1)
            track = self.track_vectors(rows)
            bias = self.track_bias(rows)
            users = self.user.weight.detach()
            # Rows with an id part of their own (seen now or by a parent) get their own list.
            own = np.flatnonzero(host(self.context_id.weight).any(axis=1))
        exact = by_frequency(own, np.bincount(ex["context"], minlength=n))
        neighbours = catalog_neighbours(
            ranker,
            data,
            queries=context,
            items=track,
            exact_rows=exact,
            feature_queries=feature_context,
            bias=bias,
        )
        lists = ranked_lists(
            ranker, data, neighbours, users=users, items=track, item_rows=np.arange(n), bias=bias
        )
        return {
            **lists,
            CONTEXT_EMB: host(context),
            TRACK_EMB: host(track),
            USER_EMB: host(users),
            TRACK_BIAS: host(bias),
            FEATURE_KEYS: feature_keys(data.features),
            CONTEXT_FEATURE_EMB: host(self.context_feature.weight[:-1]),
            TRACK_FEATURE_EMB: host(self.track_feature.weight[:-1]),
            FEATURE_BIAS: host(self.bias_feature.weight[:-1, 0]),
            MEAN: np.array([self.mean], dtype=np.float32),
        }
