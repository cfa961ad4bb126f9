"""What serving needs of one artifact with one catalog: shape checks, each track id's
model row and which rows are catalog tracks, built once per loaded version and cached for as
long as the artifact lives (a model watcher builds it off the request path)."""

from __future__ import annotations

import logging
import weakref

import numpy as np

from botify.artifacts import (
    CONTEXT_EMB,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
    ModelArtifact,
    ModelSlot,
)
from botify.catalog import Catalog
from botify.recommenders.track_rows import TrackRows

logger = logging.getLogger(__name__)


def artifact_problems(artifact: ModelArtifact) -> tuple[str, ...]:
    """What makes an artifact unservable: arrays whose shapes disagree (they would fail
    mid-request). Empty when it is fine."""
    arrays = artifact.arrays
    n = len(arrays[TRACK_IDS])
    users = arrays.get(USER_IDS)
    u = None if users is None else len(users)
    problems = []
    if arrays[TRACK_IDS].ndim != 1:
        problems.append(f"{TRACK_IDS} must be 1-D")
    expected = {
        TRACK_NEIGHBOURS: (2, n),
        USER_TOP: (2, u),
        CONTEXT_EMB: (2, n),
        TRACK_EMB: (2, n),
        USER_EMB: (2, u),
        TRACK_BIAS: (1, n),
        USER_BIAS: (1, u),
    }
    for name, (ndim, rows) in expected.items():
        array = arrays.get(name)
        if array is None:
            continue
        if rows is None:
            problems.append(f"{name} needs {USER_IDS}")
        elif array.ndim != ndim or len(array) != rows:
            problems.append(f"{name} has shape {array.shape}, expected {ndim}-D with {rows} rows")
    dims = {arrays[e].shape[-1] for e in (CONTEXT_EMB, TRACK_EMB, USER_EMB) if e in arrays}
    if len(dims) > 1:
        problems.append(f"embedding sizes differ: {sorted(dims)}")
    return tuple(problems)


class ServingIndex:
    """What serving needs of one artifact with one catalog, built once per version: each
    track id's model row, found in numpy so a request maps its candidates without a Python
    loop, and which rows are catalog tracks (a model may predate the catalog it is served
    with: only catalog tracks are answers)."""

    def __init__(self, artifact: ModelArtifact, catalog: Catalog) -> None:
        self.problems = artifact_problems(artifact)
        self.catalog = catalog
        ids = np.asarray(artifact.arrays[TRACK_IDS], dtype=np.int64).ravel()
        # By row, plus a last False that row -1 ("no row") reaches.
        self._servable = np.append(np.isin(ids, catalog.ids), False)
        # rows(tracks): each track's model row, -1 where the model has none.
        self.rows = TrackRows(ids)

    def servable(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The catalog tracks among ``tracks``, in order, with their model rows (-1 for a
        track the model ranks but has no row for)."""
        rows = self.rows(tracks)
        ok = self._servable.take(rows)
        if ok.all():
            return tracks, rows
        # Tracks the model ranks without a row of its own: rare, checked one by one.
        by_id = self.catalog.by_id
        for i in np.flatnonzero(rows < 0).tolist():
            ok[i] = int(tracks[i]) in by_id
        return tracks[ok], rows[ok]


# One index per live (artifact, catalog), dropped with the artifact. Keyed by id(): an
# artifact holds dicts, so it is not hashable.
_INDEXES: dict[int, ServingIndex] = {}


def serving_index(artifact: ModelArtifact, catalog: Catalog) -> ServingIndex:
    """The artifact's ``ServingIndex``, built on first use (O(model + catalog)). A model
    watcher can call it after loading a version, off the request path, so that no request
    pays for the build, and refuse the version if ``problems`` is not empty."""
    key = id(artifact)
    index = _INDEXES.get(key)
    if index is None or index.catalog is not catalog:
        index = ServingIndex(artifact, catalog)
        if index.problems:
            # Once per version: requests fall back until a good version replaces it.
            logger.error(
                "model %s v%s is not servable: %s",
                artifact.meta.name,
                artifact.version,
                "; ".join(index.problems),
            )
        if key not in _INDEXES:
            weakref.finalize(artifact, _INDEXES.pop, key, None)
        _INDEXES[key] = index
    return index


def usable_artifact(slot: ModelSlot, catalog: Catalog) -> tuple[ModelArtifact, ServingIndex] | None:
    """The slot's artifact, read once for the whole call, with its index; None while the
    slot is empty or its version is not servable."""
    artifact = slot.artifact
    if artifact is None:
        return None
    index = serving_index(artifact, catalog)
    return None if index.problems else (artifact, index)
