"""Each track id's row in a model's arrays, found in numpy for a whole array of ids at once:
serving maps a request's candidates with it, the offline evaluation whole blocks of lists."""

from __future__ import annotations

import numpy as np

# Track ids below DENSE_FACTOR * tracks + DENSE_SLACK get a direct id -> row table (at most
# a few times the model's own size); sparser ids a sorted search.
_DENSE_FACTOR = 4
_DENSE_SLACK = 1 << 16


class TrackRows:
    """The row of each of a model's (unique) track ``ids``; -1 for an id it does not have."""

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        n = len(ids)
        self._dense: np.ndarray | None = None
        if n and ids.min() >= 0 and ids.max() < _DENSE_FACTOR * n + _DENSE_SLACK:
            # Ids close to 0..n: a direct table, whose gathers are independent memory
            # reads, where a binary search waits on each miss in turn. The last entry is
            # "no row", for ids past the end.
            self._dense = np.full(int(ids.max()) + 2, -1, dtype=np.intp)
            self._dense[ids] = np.arange(n)
        else:
            order = np.argsort(ids, kind="stable")
            # A sentinel above every id ends the arrays: a search never runs off the end.
            self._sorted_ids = np.append(ids[order], np.iinfo(np.int64).max)
            self._sorted_rows = np.append(order, -1).astype(np.intp)

    def __call__(self, tracks: np.ndarray) -> np.ndarray:
        """Each of ``tracks``' (any shape) row, -1 where the model has none."""
        tracks = np.ascontiguousarray(tracks, dtype=np.int64)
        if self._dense is not None:
            # As unsigned, a negative id is past the end too; one cheap op, unlike clip().
            last = len(self._dense) - 1
            return self._dense.take(np.minimum(tracks.view(np.uint64), last))
        pos = np.searchsorted(self._sorted_ids, tracks)
        rows = self._sorted_rows.take(pos)
        rows[self._sorted_ids.take(pos) != tracks] = -1
        return rows
