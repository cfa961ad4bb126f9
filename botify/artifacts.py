"""Model artifacts: what a trainer publishes and a recommender serves, as plain numpy arrays.

An artifact is a directory: ``meta.json`` (``ModelMeta``, validated against
``botify/schemas/model_meta.v1.json``) plus one ``<name>.npy`` per array (loaded with
``allow_pickle=False``: no pickle is ever read). Every model exports the same standard arrays,
so one family of recommenders serves any of them:

- ``track_ids`` (N,) int64: the catalog ids of the model's track rows (required).
- ``track_neighbours`` (N, K) int64: for row i's track as context, the model's K best next
  tracks (catalog ids, best first, padded with -1).
- ``user_ids`` (U,) int64 and ``user_top`` (U, K) int64: each user's K best tracks.
- ``context_emb`` (N, d), ``track_emb`` (N, d), ``user_emb`` (U, d) float32 and
  ``track_bias`` (N,) float32: optional, for re-ranking candidates with
  ⟨context[c] + user[u], track[t]⟩ + bias[t] at request time; ``score_link`` (1,) says
  whether that score is a listen time or its logit.
- ``user_bias`` (U,) float32: optional, a user's term in that score (how readily they
  listen at all). It never reorders one user's candidates, so serving ignores it; the
  evaluation's listen-time prediction adds it for the users it knows.

The trainer writes a version's files first and flips the version pointer last, so a reader
never sees half a model (``botify.model_store``).
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

TRACK_IDS = "track_ids"
TRACK_NEIGHBOURS = "track_neighbours"
USER_IDS = "user_ids"
USER_TOP = "user_top"
CONTEXT_EMB = "context_emb"
TRACK_EMB = "track_emb"
USER_EMB = "user_emb"
TRACK_BIAS = "track_bias"
USER_BIAS = "user_bias"
# (1,) int8: how a score becomes a listen time. Absent or 0: the score itself (clipped to
# [0, 1]); 1: its logistic sigmoid.
SCORE_LINK = "score_link"
LINK_IDENTITY, LINK_SIGMOID = 0, 1
PAD = -1


@dataclass(frozen=True)
class DataWindow:
    """The training examples a version saw: event timestamps (ms) and count."""

    first_ms: int
    last_ms: int
    examples: int


@dataclass(frozen=True)
class ModelMeta:
    name: str  # the model's registry name, e.g. "contextual"
    version: int
    parent: int | None  # the version it warm-started from
    created_ms: int
    window: DataWindow
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, object] = field(default_factory=dict)


# Rows indexed per step of ``row_index``: well under a millisecond of work each.
_INDEX_CHUNK = 4096
# A real pause, not sleep(0): a thread that releases the GIL and asks for it at once mostly
# gets it back before a waiting thread wakes up.
_INDEX_PAUSE_S = 0.0001


class _RowIndex(dict[int, int]):
    """A plain dict that the index cache below can refer to weakly."""

    __slots__ = ("__weakref__",)


# Indexes of live artifacts by the content of their ids. Successive versions of a model
# mostly have the same track ids (the catalog, in catalog order): they share one index.
_INDEXES: weakref.WeakValueDictionary[bytes, _RowIndex] = weakref.WeakValueDictionary()


def row_index(ids: np.ndarray) -> dict[int, int]:
    """``{id: row}`` for ``ids``; the same object for equal ids while an artifact holds it, so
    never mutate one. Built in small steps that let other threads run: a model is loaded in a
    worker thread while the event loop serves requests, and one big build would hold the GIL
    (and stall every request) for tens of milliseconds."""
    ids = np.ascontiguousarray(ids)
    key = hashlib.blake2b(ids.data, digest_size=16).digest() + ids.dtype.str.encode()
    cached = _INDEXES.get(key)
    if cached is not None and len(cached) == len(ids):
        return cached
    rows = _RowIndex()
    n = len(ids)
    for start in range(0, n, _INDEX_CHUNK):
        stop = min(n, start + _INDEX_CHUNK)
        rows.update(zip(ids[start:stop].tolist(), range(start, stop), strict=True))
        if stop < n:
            time.sleep(_INDEX_PAUSE_S)
    _INDEXES[key] = rows
    return rows


@dataclass(frozen=True)
class ModelArtifact:
    """One loaded version. Row lookups are built once here, off the request path."""

    meta: ModelMeta
    arrays: Mapping[str, np.ndarray]
    track_row: dict[int, int] = field(init=False, repr=False)
    user_row: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = self.arrays[TRACK_IDS]
        users = self.arrays.get(USER_IDS, np.empty(0, np.int64))
        object.__setattr__(self, "track_row", row_index(ids))
        object.__setattr__(self, "user_row", row_index(users))

    @property
    def version(self) -> int:
        return self.meta.version

    def neighbours(self, track: int) -> np.ndarray | None:
        """The model's next tracks after ``track``, best first, or None if it has none."""
        return self._list(TRACK_NEIGHBOURS, self.track_row.get(track))

    def user_top(self, user: int) -> np.ndarray | None:
        """The model's best tracks for ``user``, best first, or None if it has none."""
        return self._list(USER_TOP, self.user_row.get(user))

    def _list(self, name: str, row: int | None) -> np.ndarray | None:
        table = self.arrays.get(name)
        if table is None or row is None:
            return None
        out: np.ndarray = table[row]
        kept: np.ndarray = out[out != PAD]
        return kept


@dataclass
class ModelSlot:
    """The version of one model a process serves. The model watcher replaces ``artifact``
    with one assignment, so a request sees either the old version or the new, never a mix."""

    name: str
    artifact: ModelArtifact | None = None

    @property
    def version(self) -> int | None:
        return None if self.artifact is None else self.artifact.version
