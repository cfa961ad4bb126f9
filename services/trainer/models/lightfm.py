"""A LightFM-style hybrid factorisation (Kula 2015), as in seed 001.

A user is an id embedding; a track is the sum of its id, artist and genre embeddings, with a
bias summed the same way: score(u, t) = ⟨user[u], trk(t)⟩ + bias(t). Trained with BPR on
positive (user, track) pairs against tracks sampled uniformly from the whole catalogue, so
features learn for every track. Track id parts start at zero; at export they are kept only
for tracks with a positive in the window or a parent (sampled negatives alone are not
evidence about a track), so a track the data never liked is its artist and genre.

Export: ``user_emb``, ``track_emb``/``track_bias`` with the features folded in, ``user_top``
over the full catalogue (known positives included, as for the DAE) and ``track_neighbours``
by cosine of the track vectors. The feature tables are kept under ``lightfm_*`` names; a
warm start recovers the id parts from the folded vectors.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import (
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    USER_EMB,
    USER_IDS,
)
from botify.settings import ModelHyperParams
from services.trainer.models.dataset import (
    Dataset,
    copy_rows,
    feature_keys,
    match_rows,
    parent_table,
)
from services.trainer.models.parts import catalog_neighbours, ranked_lists
from services.trainer.ranking import (
    Ranker,
    by_frequency,
    cosine_ready,
    host,
)

INIT_STD = 0.05
FEATURE_KEYS = "lightfm_feature_keys"
FEATURE_EMB = "lightfm_feature_emb"
FEATURE_BIAS = "lightfm_feature_bias"


class LightFM(nn.Module):
    objective = "bpr"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    features: torch.Tensor
    start_known: torch.Tensor

    def __init__(self, data: Dataset, dim: int, l2: float) -> None:
        super().__init__()
        n, f = data.n_tracks, data.n_features
        self.user = nn.Embedding(data.n_users, dim, sparse=True)
        self.track_id = nn.Embedding(n, dim, sparse=True)
        self.bias_id = nn.Embedding(n, 1, sparse=True)
        # Row f is the padding of a track without a genre.
        self.feature = nn.Embedding(f + 1, dim, padding_idx=f, sparse=True)
        self.bias_feature = nn.Embedding(f + 1, 1, padding_idx=f, sparse=True)
        nn.init.normal_(self.user.weight, std=INIT_STD)
        nn.init.normal_(self.feature.weight, std=INIT_STD)
        for table in (self.track_id, self.bias_id, self.bias_feature):
            nn.init.zeros_(table.weight)
        with torch.no_grad():
            self.feature.weight[f] = 0.0
        self.register_buffer("features", torch.as_tensor(data.track_features))
        # Tracks whose id part a parent trained (set by warm_start).
        self.register_buffer("start_known", torch.zeros(n, dtype=torch.bool))
        self.feature_names = data.features
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: ModelHyperParams) -> LightFM:
        return cls(data, params.dim, params.l2)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        """Positive (user, track row) pairs, repeats included: a track liked twice counts
        twice."""
        return {"user": data.user[data.positive], "track": data.track[data.positive]}

    def track_vectors(self, rows: torch.Tensor) -> torch.Tensor:
        return self.track_id(rows) + self.feature(self.features[rows]).sum(1)

    def track_bias(self, rows: torch.Tensor) -> torch.Tensor:
        return (self.bias_id(rows) + self.bias_feature(self.features[rows]).sum(1)).squeeze(1)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        users, pos = batch["user"], batch["track"]
        neg = torch.randint(self.track_id.num_embeddings, (len(users),), generator=generator)
        neg = neg.to(users.device)
        u, p, q = self.user(users), self.track_vectors(pos), self.track_vectors(neg)
        margin = (u * (p - q)).sum(1) + self.track_bias(pos) - self.track_bias(neg)
        reg = (u.square() + p.square() + q.square()).sum(1).mean()
        return nn.functional.softplus(-margin).mean() + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Feature rows by name, users by id, and the tracks' id parts: the parent's folded
        vectors minus the features (zero for tracks the parent knew only by features)."""
        dim = self.user.embedding_dim
        keys = parent.get(FEATURE_KEYS)
        feature = parent_table(parent, FEATURE_EMB, dim)
        bias_f = parent.get(FEATURE_BIAS)
        if keys is None or feature is None or bias_f is None:
            return 0
        with torch.no_grad():
            mine, theirs = match_rows(feature_keys(self.feature_names), keys)
            self.feature.weight[mine] = torch.as_tensor(feature[theirs])
            self.bias_feature.weight[mine, 0] = torch.as_tensor(bias_f[theirs].astype(np.float32))
            reused = len(mine)
            reused += copy_rows(self.user.weight, data.user_ids, parent, USER_IDS, USER_EMB)
            ids, trk = parent.get(TRACK_IDS), parent_table(parent, TRACK_EMB, dim)
            bias = parent.get(TRACK_BIAS)
            if ids is None or trk is None or bias is None:
                return reused
            mine, theirs = match_rows(data.track_ids, ids)
            rows = torch.as_tensor(mine)
            f = self.feature(self.features[rows]).sum(1)
            fb = self.bias_feature(self.features[rows]).sum(1).squeeze(1)
            self.track_id.weight[rows] = torch.as_tensor(trk[theirs]) - f
            self.bias_id.weight[rows, 0] = torch.as_tensor(bias[theirs].astype(np.float32)) - fb
            self.start_known = self.track_id.weight.abs().sum(1) > 0
        return reused + len(mine)

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        n = data.n_tracks
        liked = np.bincount(data.track[data.positive], minlength=n)
        with torch.no_grad():
            # Sampled as a negative is no evidence about a track: keep the id parts of
            # tracks liked now or known to the parent (non-zero before this run).
            known = torch.as_tensor(liked > 0).to(self.start_known.device) | self.start_known
            self.track_id.weight[~known] = 0.0
            self.bias_id.weight[~known] = 0.0
            rows = torch.arange(n, device=self.features.device)
            track, bias = self.track_vectors(rows), self.track_bias(rows)
            feature_only = self.feature(self.features).sum(1)
            users = self.user.weight.detach()
        exact = by_frequency(np.flatnonzero(host(known)), liked)
        neighbours = catalog_neighbours(
            ranker,
            data,
            queries=cosine_ready(track),
            items=cosine_ready(track),
            exact_rows=exact,
            feature_queries=cosine_ready(feature_only),
        )
        lists = ranked_lists(
            ranker, data, neighbours, users=users, items=track, item_rows=np.arange(n), bias=bias
        )
        return {
            **lists,
            USER_EMB: host(users),
            TRACK_EMB: host(track),
            TRACK_BIAS: host(bias),
            FEATURE_KEYS: feature_keys(data.features),
            FEATURE_EMB: host(self.feature.weight[:-1]),
            FEATURE_BIAS: host(self.bias_feature.weight[:-1, 0]),
        }
