"""Steps several models share: their sparse embedding tables, which parent rows a warm start
may reuse, and the ranked lists every export carries (``track_neighbours``, ``user_top``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from botify.artifacts import TRACK_IDS, TRACK_NEIGHBOURS, USER_IDS, USER_TOP
from services.trainer.models.dataset import Dataset, match_rows
from services.trainer.ranking import Ranker, by_frequency, cosine_ready, neighbour_lists, user_lists


def sparse_table(rows: int, dim: int, std: float, padding_idx: int | None = None) -> nn.Embedding:
    """A sparse table drawn from N(0, std²), or zeros for ``std`` 0; a padding row is zero."""
    table = nn.Embedding(rows, dim, padding_idx=padding_idx, sparse=True)
    if std:
        nn.init.normal_(table.weight, std=std)
    else:
        nn.init.zeros_(table.weight)
    if padding_idx is not None:
        with torch.no_grad():
            table.weight[padding_idx] = 0.0
    return table


def mean_time(examples: dict[str, np.ndarray]) -> float:
    """The examples' mean listen time, 0 without any: a pointwise model's global offset."""
    time = examples["time"]
    return float(time.mean()) if len(time) else 0.0


def trained_rows(
    new_ids: np.ndarray, parent_ids: np.ndarray, parent_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``match_rows`` kept to the ids whose row in ``parent_rows`` the parent trained
    (non-zero): a zero row is a track the parent never saw, no better than a fresh init."""
    mine, theirs = match_rows(new_ids, parent_ids)
    trained = np.abs(parent_rows[theirs]).sum(1) > 0
    return mine[trained], theirs[trained]


def item_neighbours(
    ranker: Ranker,
    data: Dataset,
    items: torch.Tensor,
    item_rows: np.ndarray,
    item_counts: np.ndarray,
    listed_users: int,
) -> np.ndarray:
    """``track_neighbours`` by cosine among a model's ``items`` (at catalog rows
    ``item_rows``), the most frequent items' lists first; tracks that are not items stay
    ``PAD``. ``listed_users`` is how many user lists share the ranking budget."""
    with torch.no_grad():
        unit = cosine_ready(items)
        queries = torch.zeros(data.n_tracks, unit.shape[1], device=unit.device)
        queries[torch.as_tensor(item_rows)] = unit
    n_items = len(item_rows)
    return neighbour_lists(
        ranker,
        queries=queries,
        exact_rows=item_rows[by_frequency(np.arange(n_items), item_counts)],
        items=unit,
        item_rows=item_rows,
        track_ids=data.track_ids,
        share=n_items / max(n_items + listed_users, 1),
    )


def catalog_neighbours(
    ranker: Ranker,
    data: Dataset,
    *,
    queries: torch.Tensor,
    items: torch.Tensor,
    exact_rows: np.ndarray,
    feature_queries: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> np.ndarray:
    """``track_neighbours`` among every catalog track, for a model whose tracks have artist
    and genre parts: ``exact_rows`` get lists of their own, the rest their feature group's
    (``neighbour_lists``); groups and exact rows share the budget with the user lists."""
    groups = len(np.unique(data.track_features, axis=0))
    return neighbour_lists(
        ranker,
        queries=queries,
        exact_rows=exact_rows,
        items=items,
        item_rows=np.arange(data.n_tracks),
        track_ids=data.track_ids,
        bias=bias,
        feature_queries=feature_queries,
        track_features=data.track_features,
        share=(groups + len(exact_rows)) / (groups + len(exact_rows) + data.n_users),
    )


def ranked_lists(
    ranker: Ranker,
    data: Dataset,
    neighbours: np.ndarray,
    *,
    users: torch.Tensor,
    items: torch.Tensor,
    item_rows: np.ndarray,
    bias: torch.Tensor | None = None,
    listed_users: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The export's ids and lists: ``neighbours`` and each user's top ``items`` by
    ⟨users[u], items[i]⟩ (+ ``bias``), for all users or ``listed_users``, most active first."""
    user_top = user_lists(
        ranker,
        users=users,
        order=data.users_by_activity(listed_users),
        items=items,
        item_rows=item_rows,
        track_ids=data.track_ids,
        bias=bias,
    )
    return {
        TRACK_IDS: data.track_ids,
        TRACK_NEIGHBOURS: neighbours,
        USER_IDS: data.user_ids,
        USER_TOP: user_top,
    }
