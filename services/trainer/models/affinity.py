"""Track affinity: one vector per track, the same whether the track is the context or the
candidate, and neighbour lists drawn from the context's own genre.

listen(t after c, by u) ≈ σ(⟨v(c), v(t)⟩ + bias(t) + bias_user[u]), with v(x) = id[x] +
artist[a(x)] + genre[g(x)] and bias(t) = bias_id[t] + bias_artist[a(t)] + b0, fitted by MSE
to the listen time on (previous track, track) and (session start, track) pairs.

Why this shape: how much of t a listener plays depends on how close t is to what they came
for, and closeness is symmetric, so one table serves both roles and every example teaches
both tracks' vectors (half the data per vector the untied ``next_track`` needs). The sigmoid
keeps predictions in [0, 1] without the linear model's clipping. Artist and genre parts make
a never-heard track start from what its artist and genre earned. Listeners differ most in how
readily they listen at all; the user's bias takes that out of the track vectors (on the
simulator, the same window trained with it served 8.9 and 10.0 against 7.5 and 9.2
without). Serving ignores it (it does not reorder a user's candidates); the evaluation's
listen-time prediction and the next warm start use it. It is exported centred, its mean in
the offset, so a user the model never saw gets the average user's prediction.

The export ranks candidates within the context's genre: cheap (each genre against itself,
about 1/G of the full catalogue product) and, on the simulator, far better than the global top
(docs/models.md). The folded vectors are exported as both context and track embeddings with
``score_link`` = sigmoid, so the evaluation reads ⟨·,·⟩ + bias as the logit it is; the parts
a warm start needs are under ``affinity_*`` names.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import (
    CONTEXT_EMB,
    LINK_SIGMOID,
    PAD,
    SCORE_LINK,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_IDS,
)
from botify.settings import ModelHyperParams
from services.trainer.models.dataset import (
    Dataset,
    context_pairs,
    copy_rows,
    feature_keys,
    match_rows,
)
from services.trainer.models.parts import sparse_table
from services.trainer.ranking import Ranker, host, to_ids

INIT_STD = 0.1
ID_EMB = "affinity_id_emb"
ID_BIAS = "affinity_id_bias"
FEATURE_KEYS = "affinity_feature_keys"
FEATURE_EMB = "affinity_feature_emb"
FEATURE_BIAS = "affinity_feature_bias"
OFFSET = "affinity_offset"


class TrackAffinity(nn.Module):
    objective = "pointwise"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    features: torch.Tensor

    def __init__(self, data: Dataset, dim: int, l2: float, seed_std: float = INIT_STD) -> None:
        super().__init__()
        n, f = data.n_tracks, data.n_features
        self.id = sparse_table(n, dim, seed_std)
        self.id_bias = sparse_table(n, 1, 0.0)
        # Row f pads a track without a genre.
        self.feature = sparse_table(f + 1, dim, seed_std, padding_idx=f)
        self.feature_bias = sparse_table(f + 1, 1, 0.0, padding_idx=f)
        self.offset = nn.Parameter(torch.zeros(1))
        self.user_bias = sparse_table(max(data.n_users, 1), 1, 0.0)
        self.register_buffer("features", torch.as_tensor(data.track_features))
        self.feature_names = data.features
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: ModelHyperParams) -> TrackAffinity:
        return cls(data, params.dim, params.l2)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        return context_pairs(data)

    def vectors(self, rows: torch.Tensor) -> torch.Tensor:
        return self.id(rows) + self.feature(self.features[rows]).sum(1)

    def bias(self, rows: torch.Tensor) -> torch.Tensor:
        # The artist's bias only (column 0): a genre-wide bias would not move a within-genre
        # ranking, and it would absorb what the genre vector should learn.
        artist = self.feature_bias(self.features[rows, 0]).squeeze(1)
        return self.id_bias(rows).squeeze(1) + artist + self.offset

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        c, t = batch["context"], batch["track"]
        vc, vt = self.vectors(c), self.vectors(t)
        user = self.user_bias(batch["user"]).squeeze(1)
        pred = torch.sigmoid((vc * vt).sum(1) + self.bias(t) + user)
        # Only the id parts are penalised: they are what overfits a rarely heard track.
        reg = (self.id(c).square().sum(1) + self.id(t).square().sum(1)).mean()
        return nn.functional.mse_loss(pred, batch["time"]) + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Reuse the parent's feature rows (by name), tracks' id rows and users' biases (by
        id)."""
        needed = (ID_EMB, ID_BIAS, FEATURE_KEYS, FEATURE_EMB, FEATURE_BIAS, OFFSET, TRACK_IDS)
        if any(k not in parent for k in needed):
            return 0
        if parent[FEATURE_EMB].shape[1] != self.feature.embedding_dim:
            return 0
        with torch.no_grad():
            mine, theirs = match_rows(feature_keys(self.feature_names), parent[FEATURE_KEYS])
            self.feature.weight[mine] = torch.as_tensor(parent[FEATURE_EMB][theirs])
            self.feature_bias.weight[mine, 0] = torch.as_tensor(parent[FEATURE_BIAS][theirs])
            self.offset[0] = float(parent[OFFSET][0])
        tracks = copy_rows(self.id.weight, data.track_ids, parent, TRACK_IDS, ID_EMB)
        copy_rows(self.id_bias.weight, data.track_ids, parent, TRACK_IDS, ID_BIAS)
        # A parent from before user biases has none: its users start from zero.
        users = copy_rows(self.user_bias.weight, data.user_ids, parent, USER_IDS, USER_BIAS)
        return len(mine) + tracks + users

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        n, users = data.n_tracks, data.n_users
        with torch.no_grad():
            if users:
                # The same function, with the users' mean moved into the offset.
                mean = self.user_bias.weight[:users].mean()
                self.user_bias.weight[:users] -= mean
                self.offset.add_(mean)
            rows = torch.arange(n, device=self.features.device)
            vectors, bias = self.vectors(rows), self.bias(rows)
        neighbours = within_group_neighbours(
            ranker, vectors, bias, data.track_features[:, 1], data.track_ids
        )
        vectors_np = host(vectors)
        return {
            TRACK_IDS: data.track_ids,
            TRACK_NEIGHBOURS: neighbours,
            # One table in both roles; the score is a logit (score_link), so the
            # evaluation's listen-time MSE applies the sigmoid the model was fitted with.
            CONTEXT_EMB: vectors_np,
            TRACK_EMB: vectors_np,
            TRACK_BIAS: host(bias),
            SCORE_LINK: np.array([LINK_SIGMOID], dtype=np.int8),
            ID_EMB: host(self.id.weight),
            ID_BIAS: host(self.id_bias.weight[:, 0]),
            FEATURE_KEYS: feature_keys(data.features),
            FEATURE_EMB: host(self.feature.weight[:-1]),
            FEATURE_BIAS: host(self.feature_bias.weight[:-1, 0]),
            OFFSET: host(self.offset.detach()),
            USER_IDS: data.user_ids,
            USER_BIAS: host(self.user_bias.weight[:users, 0]),
        }


def within_group_neighbours(
    ranker: Ranker,
    vectors: torch.Tensor,
    bias: torch.Tensor,
    group: np.ndarray,
    track_ids: np.ndarray,
) -> np.ndarray:
    """(N, K) catalog ids: each track's best other tracks of its own group by ⟨v, v'⟩ + bias,
    biggest groups first so a budget cut leaves the smallest lists ``PAD`` (counted)."""
    table = np.full((len(track_ids), ranker.k), PAD, dtype=np.int64)
    groups, sizes = np.unique(group, return_counts=True)
    for g in groups[np.argsort(-sizes, kind="stable")]:
        members = np.flatnonzero(group == g)
        idx = torch.as_tensor(members)
        lists, done = ranker.top(
            "neighbours",
            vectors[idx],
            vectors[idx],
            bias=bias[idx],
            exclude=np.arange(len(members)),  # a track is not its own neighbour
        )
        table[members[:done]] = to_ids(lists[:done], members, track_ids)
    return table
