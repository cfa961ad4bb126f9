"""LightGCN (He et al. 2020), as in seed 001: embeddings smoothed over the user–track graph.

Nodes are the window's users and the tracks with a positive; edges are positive (user,
track) pairs. Layer 0 is a free embedding per node; each layer multiplies by the symmetric
normalised adjacency D^-1/2 A D^-1/2 (a torch.sparse matrix); a node's vector is the mean of
its layers. Trained with BPR against tracks sampled uniformly among the graph's tracks.

Export: the propagated vectors as ``user_emb``/``track_emb`` (score = dot product, no bias),
``user_top`` over the graph's tracks (known positives included, as for the DAE), and
``track_neighbours`` by cosine. A user without positives has no edge, so nothing to go on:
a zero vector and the window's most liked tracks. Layer 0 is kept as ``lightgcn_user_e0`` and
``lightgcn_track_e0`` for the next run's warm start.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import (
    TRACK_EMB,
    TRACK_IDS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
)
from botify.models.lightgcn import LightGcnHyperParams
from services.trainer.models.dataset import Dataset, copy_rows, parent_table
from services.trainer.models.parts import item_neighbours, ranked_lists, trained_rows
from services.trainer.ranking import (
    Ranker,
    by_frequency,
    host,
    scatter,
    to_ids,
)

INIT_STD = 0.1
USER_E0 = "lightgcn_user_e0"
TRACK_E0 = "lightgcn_track_e0"


class LightGCN(nn.Module):
    objective = "bpr"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    adjacency: torch.Tensor
    degree: torch.Tensor

    def __init__(
        self,
        n_users: int,
        item_rows: np.ndarray,
        edges: tuple[np.ndarray, np.ndarray],
        dim: int,
        layers: int,
        l2: float,
    ) -> None:
        super().__init__()
        self.n_users = n_users
        self.item_rows = item_rows  # catalog row of each item node
        n = n_users + len(item_rows)
        self.embedding = nn.Embedding(n, dim)
        nn.init.normal_(self.embedding.weight, std=INIT_STD)
        users, items = (torch.as_tensor(e) for e in edges)
        src = torch.cat([users, items + n_users])
        dst = torch.cat([items + n_users, users])
        degree = torch.bincount(src, minlength=n).float()
        values = torch.rsqrt(degree[src] * degree[dst])
        adjacency = torch.sparse_coo_tensor(
            torch.stack([src, dst]), values, (n, n), check_invariants=True
        )
        self.register_buffer("adjacency", adjacency.coalesce())
        self.register_buffer("degree", degree)
        self.layers = layers
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: LightGcnHyperParams) -> LightGCN:
        users, rows = data.positive_pairs()
        item_rows, items = np.unique(rows, return_inverse=True)
        return cls(data.n_users, item_rows, (users, items), params.dim, params.layers, params.l2)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        """Distinct positive (user, item) pairs; items index the graph's tracks."""
        users, rows = data.positive_pairs()
        _, items = np.unique(rows, return_inverse=True)
        return {"user": users, "item": items.astype(np.int64)}

    def propagate(self) -> torch.Tensor:
        """Every node's vector: the mean of layers 0..L."""
        layer = self.embedding.weight
        total = layer
        for _ in range(self.layers):
            layer = torch.sparse.mm(self.adjacency, layer)
            total = total + layer
        return total / (self.layers + 1)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        users, pos = batch["user"], batch["item"] + self.n_users
        n_items = len(self.item_rows)
        neg = torch.randint(n_items, (len(users),), generator=generator).to(users.device)
        neg = neg + self.n_users
        final = self.propagate()
        u = final[users]
        margin = (u * final[pos]).sum(1) - (u * final[neg]).sum(1)
        e0 = self.embedding.weight
        reg = (e0[users].square() + e0[pos].square() + e0[neg].square()).sum(1).mean() / 2
        return nn.functional.softplus(-margin).mean() + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Layer 0 of the users and tracks both versions know (tracks the parent trained)."""
        weight = self.embedding.weight
        reused = copy_rows(weight[: self.n_users], data.user_ids, parent, USER_IDS, USER_E0)
        ids = parent.get(TRACK_IDS)
        tracks = parent_table(parent, TRACK_E0, weight.shape[1])
        if ids is None or tracks is None:
            return reused
        mine, theirs = trained_rows(data.track_ids[self.item_rows], ids, tracks)
        with torch.no_grad():
            rows = torch.as_tensor(mine + self.n_users)
            weight[rows] = torch.as_tensor(tracks[theirs], device=weight.device)
        return reused + len(mine)

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        n, rows, k = data.n_tracks, self.item_rows, ranker.k
        with torch.no_grad():
            final = self.propagate()
            connected = self.degree[: self.n_users] > 0
            users = final[: self.n_users] * connected[:, None]
            items = final[self.n_users :]
        item_degree = host(self.degree[self.n_users :]).astype(np.int64)
        with_edges = np.flatnonzero(host(connected))
        neighbours = item_neighbours(ranker, data, items, rows, item_degree, len(with_edges))
        lists = ranked_lists(
            ranker,
            data,
            neighbours,
            users=users,
            items=items,
            item_rows=rows,
            listed_users=with_edges,
        )
        popular = to_ids(by_frequency(np.arange(len(rows)), item_degree)[:k], rows, data.track_ids)
        lonely = np.flatnonzero(~host(connected).astype(bool))
        lists[USER_TOP][lonely, : len(popular)] = popular
        return {
            **lists,
            USER_EMB: host(users),
            TRACK_EMB: scatter(host(items), rows, n),
            USER_E0: host(self.embedding.weight[: self.n_users]),
            TRACK_E0: scatter(host(self.embedding.weight[self.n_users :]), rows, n),
        }
