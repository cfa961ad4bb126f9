"""From a trained model to the artifact's arrays: full-catalogue top-K lists and row tables.

Every list is exact over its candidates (no sampling): queries are scored against all of them
in blocks of rows, so memory stays at ``block × candidates`` floats. Scoring a 50k catalogue
against itself takes longer than a retraining period on one core, so queries come most
important first and a ranker stops at its deadline; rows it did not reach get their feature
group's list where the model has features, else ``PAD``, and are counted in ``Ranker.stats``
(serving falls back for them). Nothing is dropped silently.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from botify.artifacts import PAD

# An absent row or item (the models' dataset.NO_ROW has the same value).
NO_ROW = -1


class Ranker:
    """Top-K over candidate sets under one wall-clock budget shared by a model's lists."""

    def __init__(self, k: int, block: int, budget_s: float) -> None:
        self.k = k
        self.block = block
        self.deadline = time.monotonic() + budget_s
        self.stats: dict[str, float] = {}

    def until(self, share: float) -> float:
        """The instant when ``share`` of the budget left now will have passed."""
        now = time.monotonic()
        return now + max(0.0, self.deadline - now) * min(max(share, 0.0), 1.0)

    def top(
        self,
        name: str,
        queries: torch.Tensor,
        items: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        exclude: np.ndarray | None = None,
        until: float | None = None,
        k: int | None = None,
    ) -> tuple[np.ndarray, int]:
        """(Q, k) indexes into ``items`` of each query's best scores ⟨q, item⟩ + bias, best
        first, ``PAD`` where there are fewer candidates; and how many leading rows were
        computed before ``until`` (a ``time.monotonic()`` instant, capped by the ranker's
        deadline); later rows are ``PAD``. ``exclude`` (Q,) is an item index per query
        that may not appear (a track is not its own neighbour), NO_ROW for none."""
        k = self.k if k is None else k
        n = queries.shape[0]
        out = np.full((n, k), PAD, dtype=np.int64)
        deadline = self.deadline if until is None else min(until, self.deadline)
        take = min(k, items.shape[0])
        # Without candidates every list is rightly empty: nothing was skipped.
        done = 0 if take else n
        with torch.no_grad():
            items_t = items.T.contiguous()
            while done < n and time.monotonic() < deadline:
                stop = min(done + self.block, n)
                scores = queries[done:stop] @ items_t
                if bias is not None:
                    scores += bias
                if exclude is not None:
                    ex = torch.as_tensor(exclude[done:stop], device=scores.device)
                    rows = torch.nonzero(ex != NO_ROW).squeeze(1)
                    scores[rows, ex[rows]] = -torch.inf
                values, index = torch.topk(scores, take, dim=1)
                index[torch.isneginf(values)] = PAD
                out[done:stop, :take] = index.cpu().numpy()
                done = stop
        self._count(f"{name}_rows", done)
        self._count(f"{name}_rows_skipped", n - done)
        return out, done

    def _count(self, key: str, value: int) -> None:
        self.stats[key] = self.stats.get(key, 0.0) + float(value)


def neighbour_lists(
    ranker: Ranker,
    *,
    queries: torch.Tensor,
    exact_rows: np.ndarray,
    items: torch.Tensor,
    item_rows: np.ndarray,
    track_ids: np.ndarray,
    bias: torch.Tensor | None = None,
    feature_queries: torch.Tensor | None = None,
    track_features: np.ndarray | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """``track_neighbours`` (N, K): catalog ids of each track's best next tracks.

    ``queries`` (N, d) are the tracks' context vectors and ``exact_rows`` the rows worth a
    list of their own, most important first. With ``feature_queries`` (the vectors a track
    has from its artist and genre alone) every other row, and any exact row the budget did
    not reach, gets its feature group's list: what the model knows of a track it has not
    seen. Without them such rows stay ``PAD``. ``items`` (M, d) are the candidates, at
    catalog rows ``item_rows``; a track is never its own neighbour."""
    n, k = len(track_ids), ranker.k
    until = ranker.until(share)
    table = np.full((n, k), PAD, dtype=np.int64)
    if feature_queries is not None and track_features is not None:
        reps, group = feature_groups(np.arange(n), track_features)
        # One more than k, so that a member can drop itself from its group's list.
        lists, done = ranker.top(
            "neighbour_groups",
            feature_queries[torch.as_tensor(reps)],
            items,
            bias=bias,
            # The groups are every row's fallback, so they go first, with at most half.
            until=ranker.until(share / 2),
            k=k + 1,
        )
        ids = to_ids(lists, item_rows, track_ids)
        ids[done:] = PAD
        table = drop_self(ids[group], track_ids, k)
    item_of_row = np.full(n, NO_ROW, dtype=np.int64)
    item_of_row[item_rows] = np.arange(len(item_rows))
    lists, done = ranker.top(
        "neighbours",
        queries[torch.as_tensor(exact_rows)],
        items,
        bias=bias,
        exclude=item_of_row[exact_rows],
        until=until,
    )
    table[exact_rows[:done]] = to_ids(lists[:done], item_rows, track_ids)
    return table


def user_lists(
    ranker: Ranker,
    *,
    users: torch.Tensor,
    order: np.ndarray,
    items: torch.Tensor,
    item_rows: np.ndarray,
    track_ids: np.ndarray,
    bias: torch.Tensor | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """``user_top`` (U, K): catalog ids of each user's best tracks, computed for users in
    ``order`` (most active first) until the budget ends; the rest stay ``PAD``."""
    table = np.full((users.shape[0], ranker.k), PAD, dtype=np.int64)
    lists, done = ranker.top(
        "user_top", users[torch.as_tensor(order)], items, bias=bias, until=ranker.until(share)
    )
    table[order[:done]] = to_ids(lists[:done], item_rows, track_ids)
    return table


def to_ids(index: np.ndarray, item_rows: np.ndarray, track_ids: np.ndarray) -> np.ndarray:
    """Item indexes (``PAD`` kept) as catalog ids, through the items' catalog rows."""
    found = index != PAD
    out = np.full(index.shape, PAD, dtype=np.int64)
    out[found] = track_ids[item_rows[index[found]]]
    return out


def scatter(values: np.ndarray, rows: np.ndarray, size: int, fill: float = 0.0) -> np.ndarray:
    """A ``size``-row float32 table with ``values`` at ``rows`` and ``fill`` elsewhere."""
    out = np.full((size, *values.shape[1:]), fill, dtype=np.float32)
    out[rows] = values
    return out


def by_frequency(rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``rows`` most frequent first (ties by row), so a budget cut drops the rarest."""
    return rows[np.lexsort((rows, -counts[rows]))]


def feature_groups(rows: np.ndarray, track_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group ``rows`` by their feature tuple: (one representative row per group, each row's
    group). Tracks a model knows only by features share one vector, hence one list."""
    if len(rows) == 0:
        return rows, rows
    _, first, group = np.unique(
        track_features[rows], axis=0, return_index=True, return_inverse=True
    )
    return rows[first], group.reshape(-1)


def drop_self(lists: np.ndarray, selves: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` entries of each list (of at least ``k``, ids unique within a list)
    that are not its row's own id (``selves``)."""
    is_self = lists == selves[:, None]
    # Entries after the row's own id shift left by one.
    at = np.where(is_self.any(axis=1), is_self.argmax(axis=1), lists.shape[1])
    cols = np.arange(k)
    index = cols + (cols >= at[:, None])
    return np.take_along_axis(lists, np.minimum(index, lists.shape[1] - 1), axis=1)


def cosine_ready(table: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (zero rows stay zero), so a dot product is a cosine."""
    return F.normalize(table, dim=1)


def host(t: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy of ``t``."""
    return t.detach().to("cpu", torch.float32).numpy().copy()
