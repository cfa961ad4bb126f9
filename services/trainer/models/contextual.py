"""The course's contextual model: which track goes well after a session's start track.

score(c, t) = ⟨context[c], track[t]⟩ + bias[t] + mean, fitted by MSE to the listen time on
(session start, later track of the session, time) pairs. Tables are indexed by catalog row;
only rows trained, in this window or by a parent, are exported (others are zero), and only
tracks trained as a target are candidates: an id-only model knows nothing of the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from botify.artifacts import CONTEXT_EMB, TRACK_BIAS, TRACK_EMB, TRACK_IDS, TRACK_NEIGHBOURS
from botify.settings import ModelHyperParams
from services.trainer.models.dataset import NO_ROW, Dataset, match_rows, parent_table
from services.trainer.models.parts import mean_time
from services.trainer.ranking import Ranker, by_frequency, host, neighbour_lists, scatter

INIT_STD = 0.05


class Contextual(nn.Module):
    objective = "pointwise"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    known_context: torch.Tensor
    known_track: torch.Tensor

    def __init__(self, n_tracks: int, dim: int, mean: float, l2: float) -> None:
        super().__init__()
        self.context = nn.Embedding(n_tracks, dim, sparse=True)
        self.track = nn.Embedding(n_tracks, dim, sparse=True)
        self.bias = nn.Embedding(n_tracks, 1, sparse=True)
        nn.init.normal_(self.context.weight, std=INIT_STD)
        nn.init.normal_(self.track.weight, std=INIT_STD)
        nn.init.zeros_(self.bias.weight)
        # Rows a parent trained (set by warm_start): kept even when this window lacks them.
        self.register_buffer("known_context", torch.zeros(n_tracks, dtype=torch.bool))
        self.register_buffer("known_track", torch.zeros(n_tracks, dtype=torch.bool))
        self.mean = mean
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: ModelHyperParams) -> Contextual:
        return cls(data.n_tracks, params.dim, mean_time(cls.examples(data)), params.l2)

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        """(session start, track, time); a session's start paired with itself teaches nothing."""
        keep = (data.start != NO_ROW) & (data.start != data.track)
        return {"context": data.start[keep], "track": data.track[keep], "time": data.time[keep]}

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        c, t = self.context(batch["context"]), self.track(batch["track"])
        pred = (c * t).sum(1) + self.bias(batch["track"]).squeeze(1) + self.mean
        reg = (c.square().sum(1) + t.square().sum(1)).mean()
        return nn.functional.mse_loss(pred, batch["time"]) + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Copy the parent's trained rows (non-zero) for the tracks both versions know."""
        ids = parent.get(TRACK_IDS)
        ctx = parent_table(parent, CONTEXT_EMB, self.context.embedding_dim)
        trk = parent_table(parent, TRACK_EMB, self.track.embedding_dim)
        bias = parent.get(TRACK_BIAS)
        if ids is None or ctx is None or trk is None or bias is None:
            return 0
        mine, theirs = match_rows(data.track_ids, ids)
        with torch.no_grad():
            c_ok = np.abs(ctx[theirs]).sum(1) > 0
            t_ok = np.abs(trk[theirs]).sum(1) > 0
            self.context.weight[mine[c_ok]] = torch.as_tensor(ctx[theirs[c_ok]])
            self.track.weight[mine[t_ok]] = torch.as_tensor(trk[theirs[t_ok]])
            # The parent's bias includes its own mean; this run has its own.
            b = torch.as_tensor(bias[theirs[t_ok]].astype(np.float32) - self.mean)
            self.bias.weight[mine[t_ok], 0] = b
            self.known_context[mine[c_ok]] = True
            self.known_track[mine[t_ok]] = True
        return int(c_ok.sum() + t_ok.sum())

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        ex = self.examples(data)
        n = data.n_tracks
        ctx_count = np.bincount(ex["context"], minlength=n)
        trk_count = np.bincount(ex["track"], minlength=n)
        ctx_rows = np.flatnonzero((ctx_count > 0) | host(self.known_context).astype(bool))
        trk_rows = np.flatnonzero((trk_count > 0) | host(self.known_track).astype(bool))
        context, track = self.context.weight.detach(), self.track.weight.detach()
        bias = self.bias.weight.detach()[:, 0] + self.mean
        neighbours = neighbour_lists(
            ranker,
            queries=context,
            exact_rows=by_frequency(ctx_rows, ctx_count),
            items=track[torch.as_tensor(trk_rows)],
            item_rows=trk_rows,
            track_ids=data.track_ids,
            bias=bias[torch.as_tensor(trk_rows)],
        )
        return {
            TRACK_IDS: data.track_ids,
            TRACK_NEIGHBOURS: neighbours,
            CONTEXT_EMB: scatter(host(context[torch.as_tensor(ctx_rows)]), ctx_rows, n),
            TRACK_EMB: scatter(host(track[torch.as_tensor(trk_rows)]), trk_rows, n),
            # An unknown track's best guess is the mean listen time.
            TRACK_BIAS: scatter(host(bias[torch.as_tensor(trk_rows)]), trk_rows, n, self.mean),
        }
