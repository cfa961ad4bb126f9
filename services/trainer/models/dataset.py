"""The index spaces a training run shares between its models, loop and export.

Tracks are catalog rows (``track_ids`` in catalog order, the artifact's rows), users are the
sorted ids seen in the window, features are the catalog's artists and genres. Examples whose
track is not in the catalog, or whose fields are missing or out of range, are dropped and
counted, never silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import mmh3
import numpy as np
import polars as pl
import torch

from botify.catalog import Catalog
from botify.errors import BotifyError
from services.trainer.ranking import by_frequency

REQUIRED_COLUMNS = ("timestamp", "user", "session_start", "context", "track", "time")
NO_ROW = -1


class TrainingDataError(BotifyError):
    """The examples cannot train the model: missing columns, or nothing usable left."""

    code = "training_data"


@dataclass(frozen=True)
class Dataset:
    """One window of examples, as catalog rows and user indexes (arrays of equal length)."""

    track_ids: np.ndarray  # (N,) int64, catalog order
    features: np.ndarray  # (F,) str: "artist:<name>", "genre:<name>"
    # (N, 2) int64: each track's artist and genre feature; F (a padding row) for no genre.
    track_features: np.ndarray
    user_ids: np.ndarray  # (U,) int64, sorted
    user: np.ndarray  # (n,) index into user_ids
    start: np.ndarray  # (n,) catalog row of the session's first track, NO_ROW if unknown
    context: np.ndarray  # (n,) catalog row of the previous track, NO_ROW if unknown
    track: np.ndarray  # (n,) catalog row
    time: np.ndarray  # (n,) float32 in [0, 1]
    positive: np.ndarray  # (n,) bool: time >= the positive threshold
    dropped: int  # examples left out: track not in the catalog, missing or bad fields

    @property
    def n_tracks(self) -> int:
        return len(self.track_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_features(self) -> int:
        return len(self.features)

    def __len__(self) -> int:
        return len(self.track)

    @classmethod
    def build(cls, frame: pl.DataFrame, catalog: Catalog, positive_threshold: float) -> Dataset:
        """Index ``frame`` (the trainer's examples) against ``catalog``."""
        missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
        if missing:
            raise TrainingDataError(f"the examples lack columns {missing}")
        total = frame.height
        frame = frame.select(REQUIRED_COLUMNS).drop_nulls()
        frame = frame.filter(pl.col("time").is_finite() & pl.col("time").is_between(0.0, 1.0))
        track_ids = np.asarray(catalog.ids, dtype=np.int64)
        rows = ids_to_rows(track_ids, frame["track"].to_numpy())
        keep = rows != NO_ROW
        frame, rows = frame.filter(pl.Series(keep)), rows[keep]
        users = frame["user"].to_numpy().astype(np.int64)
        user_ids, user = np.unique(users, return_inverse=True)
        time = frame["time"].to_numpy().astype(np.float32)
        features, track_features = catalog_features(catalog)
        return cls(
            track_ids=track_ids,
            features=features,
            track_features=track_features,
            user_ids=user_ids.astype(np.int64),
            user=user.astype(np.int64),
            start=ids_to_rows(track_ids, frame["session_start"].to_numpy()),
            context=ids_to_rows(track_ids, frame["context"].to_numpy()),
            track=rows,
            time=time,
            positive=time >= positive_threshold,
            dropped=total - frame.height,
        )

    def users_by_activity(self, users: np.ndarray | None = None) -> np.ndarray:
        """User indexes (all, or ``users``), most examples first: the order user lists are
        ranked in, so a budget cut drops the least active."""
        rows = np.arange(self.n_users) if users is None else users
        return by_frequency(rows, np.bincount(self.user, minlength=self.n_users))

    def positive_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (user index, track row) pairs with a positive listen."""
        key = np.unique(self.user[self.positive] * self.n_tracks + self.track[self.positive])
        return key // self.n_tracks, key % self.n_tracks


def ids_to_rows(table_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each of ``ids`` in ``table_ids`` (unique, any order), NO_ROW where absent."""
    table = np.asarray(table_ids, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    if len(table) == 0:
        return np.full(len(ids), NO_ROW, dtype=np.int64)
    order = np.argsort(table, kind="stable")
    ordered = table[order]
    pos = np.minimum(np.searchsorted(ordered, ids), len(table) - 1)
    found = ordered[pos] == ids
    return np.where(found, order[pos], NO_ROW).astype(np.int64)


def catalog_features(catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """Feature names and each track's (artist, genre) feature indexes; F pads a missing genre."""
    names: dict[str, int] = {}
    pairs = np.empty((len(catalog), 2), dtype=np.int64)
    genres: list[int] = []
    for i, t in enumerate(catalog.tracks):
        pairs[i, 0] = names.setdefault(f"artist:{t.artist}", len(names))
        genres.append(-1 if t.genre is None else names.setdefault(f"genre:{t.genre}", len(names)))
    pairs[:, 1] = genres
    pairs[pairs[:, 1] < 0, 1] = len(names)
    return np.array(list(names), dtype=str), pairs


def match_rows(new_ids: np.ndarray, parent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new rows, parent rows) of the ids both arrays hold: how a parent's rows map into ours."""
    parent_rows = ids_to_rows(parent_ids, new_ids)
    mine = np.flatnonzero(parent_rows != NO_ROW)
    return mine, parent_rows[mine]


def parent_table(parent: Mapping[str, np.ndarray], name: str, dim: int) -> np.ndarray | None:
    """``parent[name]`` as float32 if it is a table of ``dim`` columns, else None: a parent
    trained with another shape cannot seed this run. A 1-D array (a bias per row) is a table
    of one column."""
    table = parent.get(name)
    if table is not None and table.ndim == 1 and dim == 1:
        table = table[:, None]
    if table is None or table.ndim != 2 or table.shape[1] != dim:
        return None
    return np.asarray(table, dtype=np.float32)


def context_pairs(data: Dataset) -> dict[str, np.ndarray]:
    """(previous track, track) and (session start, track) pairs with their user and listen
    time; the second track of a session gives one pair, not the same one twice."""
    prev = (data.context != NO_ROW) & (data.context != data.track)
    start = (data.start != NO_ROW) & (data.start != data.track) & (data.start != data.context)
    return {
        "context": np.concatenate([data.context[prev], data.start[start]]),
        "track": np.concatenate([data.track[prev], data.track[start]]),
        "user": np.concatenate([data.user[prev], data.user[start]]),
        "time": np.concatenate([data.time[prev], data.time[start]]),
    }


def feature_keys(names: np.ndarray) -> np.ndarray:
    """Stable int64 keys of feature names (artifacts hold numbers only), matched like ids."""
    return np.array([mmh3.hash64(str(n), signed=True)[0] for n in names.tolist()], np.int64)


def copy_rows(
    table: torch.Tensor,
    ids: np.ndarray,
    parent: Mapping[str, np.ndarray],
    ids_name: str,
    table_name: str,
) -> int:
    """Copy the rows of ``parent[table_name]`` into ``table`` (rows keyed by ``ids``) for the
    ids in ``parent[ids_name]``; returns how many rows were copied."""
    parent_ids = parent.get(ids_name)
    values = parent_table(parent, table_name, table.shape[1])
    if parent_ids is None or values is None or len(parent_ids) != len(values):
        return 0
    mine, theirs = match_rows(ids, parent_ids)
    with torch.no_grad():
        table[torch.as_tensor(mine)] = torch.as_tensor(values[theirs], device=table.device)
    return len(mine)
