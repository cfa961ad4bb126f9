"""Mult-DAE (Liang et al. 2018, "Variational autoencoders for collaborative filtering"), as in
seed 002: a denoising autoencoder over each user's set of positive tracks.

The input is the user's binary row, L2-normalised, with input dropout while training; one
tanh hidden layer; the output a softmax over the items, trained with the multinomial
log-likelihood of the user's positives. Items are the tracks with a positive in the window.

Export: a user's logits are ⟨hidden(u), decoder[t]⟩ + decoder_bias[t], so ``user_emb`` is the
hidden layer, ``track_emb``/``track_bias`` the decoder (rows of other tracks are zero, bias
the lowest), and serving's dot product reproduces the model's ranking. ``user_top`` ranks all
items, *including* the user's known positives: serving filters what the session already
played, and coming back to a liked track is a good recommendation. ``track_neighbours`` are
the nearest items by cosine of the decoder rows. The encoder is kept as ``dae_encoder`` rows
(with ``dae_encoder_bias``) so the next run warm-starts.
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
)
from botify.models.dae import DaeHyperParams
from services.trainer.models.dataset import Dataset, parent_table
from services.trainer.models.parts import item_neighbours, ranked_lists, trained_rows
from services.trainer.ranking import (
    Ranker,
    host,
    scatter,
)

ENCODER = "dae_encoder"
ENCODER_BIAS = "dae_encoder_bias"


class MultDAE(nn.Module):
    objective = "multinomial"

    # Registered buffers (nn.Module's __getattr__ would type them Tensor | Module).
    offsets: torch.Tensor
    items: torch.Tensor

    def __init__(
        self,
        item_rows: np.ndarray,
        user_items: tuple[np.ndarray, np.ndarray],
        hidden: int,
        dropout: float,
        l2: float,
    ) -> None:
        super().__init__()
        self.item_rows = item_rows  # catalog row of each item
        n_items = len(item_rows)
        # x @ W for a sparse x is a weighted bag of W's rows.
        self.encoder = nn.EmbeddingBag(n_items, hidden, mode="sum")
        self.encoder_bias = nn.Parameter(torch.zeros(hidden))
        self.decoder = nn.Linear(hidden, n_items)
        nn.init.xavier_uniform_(self.encoder.weight)
        nn.init.xavier_uniform_(self.decoder.weight)
        nn.init.zeros_(self.decoder.bias)
        # Each user's positives as CSR over users: items[offsets[u]:offsets[u + 1]].
        offsets, items = user_items
        self.register_buffer("offsets", torch.as_tensor(offsets))
        self.register_buffer("items", torch.as_tensor(items))
        self.dropout = dropout
        self.l2 = l2

    @classmethod
    def build(cls, data: Dataset, params: DaeHyperParams) -> MultDAE:
        users, rows = data.positive_pairs()
        item_rows, items = np.unique(rows, return_inverse=True)
        # positive_pairs is sorted by user, so each user's items are contiguous.
        offsets = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(users, minlength=data.n_users), out=offsets[1:])
        return cls(
            item_rows, (offsets, items.astype(np.int64)), params.dim, params.dropout, params.l2
        )

    @staticmethod
    def examples(data: Dataset) -> dict[str, np.ndarray]:
        """The users with at least one positive: the rows to reconstruct."""
        users, _ = data.positive_pairs()
        return {"user": np.unique(users)}

    def _bag(
        self, users: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The users' positives as a flat bag: (items, bag offsets, L2-normalising weights
        with dropout applied when ``generator`` is given, each item's user in the batch)."""
        start, stop = self.offsets[users], self.offsets[users + 1]
        sizes = stop - start
        owner = torch.repeat_interleave(torch.arange(len(users), device=sizes.device), sizes)
        first = torch.cumsum(sizes, 0) - sizes
        flat = start[owner] + torch.arange(len(owner), device=sizes.device) - first[owner]
        items = self.items[flat]
        weights = torch.rsqrt(sizes.clamp(min=1).float())[owner]
        if generator is not None and self.dropout > 0:
            keep = torch.rand(len(items), generator=generator).to(items.device) >= self.dropout
            weights = weights * keep / (1.0 - self.dropout)
        return items, first, weights, owner

    def hidden(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        items, first, weights, _ = self._bag(users, generator)
        bag = self.encoder(items, first, per_sample_weights=weights)
        return torch.tanh(bag + self.encoder_bias)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        users = batch["user"]
        logits = self.decoder(self.hidden(users, generator))
        log_p = torch.log_softmax(logits, dim=1)
        items, _, _, owner = self._bag(users, None)
        nll = -log_p[owner, items].sum() / len(users)
        reg = self.encoder.weight.square().sum() + self.decoder.weight.square().sum()
        return nll + self.l2 * reg

    def warm_start(self, parent: Mapping[str, np.ndarray], data: Dataset) -> int:
        """Encoder and decoder rows of the items both versions know, trained by the parent."""
        ids = parent.get(TRACK_IDS)
        hidden = self.decoder.in_features
        enc = parent_table(parent, ENCODER, hidden)
        dec = parent_table(parent, TRACK_EMB, hidden)
        dec_bias, enc_bias = parent.get(TRACK_BIAS), parent.get(ENCODER_BIAS)
        if ids is None or enc is None or dec is None or dec_bias is None or enc_bias is None:
            return 0
        if enc_bias.shape != (hidden,):
            return 0
        mine, theirs = trained_rows(data.track_ids[self.item_rows], ids, dec)
        with torch.no_grad():
            self.encoder.weight[mine] = torch.as_tensor(enc[theirs])
            self.decoder.weight[mine] = torch.as_tensor(dec[theirs])
            self.decoder.bias[mine] = torch.as_tensor(dec_bias[theirs].astype(np.float32))
            self.encoder_bias.copy_(torch.as_tensor(enc_bias.astype(np.float32)))
        return len(mine)

    def export(self, data: Dataset, ranker: Ranker) -> dict[str, np.ndarray]:
        n, rows = data.n_tracks, self.item_rows
        with torch.no_grad():
            # Every user seen: one without positives gets the model's prior (its empty bag).
            users = torch.cat(
                [
                    self.hidden(torch.arange(s, min(s + 4096, data.n_users)))
                    for s in range(0, max(data.n_users, 1), 4096)
                ]
            )[: data.n_users]
            decoder, bias = self.decoder.weight.detach(), self.decoder.bias.detach()
        item_count = np.bincount(self.items.cpu().numpy(), minlength=len(rows))
        neighbours = item_neighbours(ranker, data, decoder, rows, item_count, data.n_users)
        lists = ranked_lists(
            ranker, data, neighbours, users=users, items=decoder, item_rows=rows, bias=bias
        )
        low = float(bias.min()) if len(rows) else 0.0
        return {
            **lists,
            USER_EMB: host(users),
            TRACK_EMB: scatter(host(decoder), rows, n),
            TRACK_BIAS: scatter(host(bias), rows, n, low),
            ENCODER: scatter(host(self.encoder.weight), rows, n),
            ENCODER_BIAS: host(self.encoder_bias),
        }
