"""Candidate sources that read trained models: each reads its slot's artifact once per
call, so one answer never mixes two versions, and reports that version with its candidates.
Work per request is bounded by the candidate lists (a few hundred tracks), never by the
catalog or the model's size."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from botify.artifacts import (
    CONTEXT_EMB,
    PAD,
    TRACK_NEIGHBOURS,
    USER_EMB,
    ModelArtifact,
    ModelSlot,
)
from botify.catalog import Catalog
from botify.recommenders.anchors import Anchor, session_listens
from botify.recommenders.base import RecommendRequest
from botify.recommenders.policies import Ranked
from botify.recommenders.ranking import by_score
from botify.recommenders.serving_index import usable_artifact
from botify.state import UserState


def _model_list(
    slot: ModelSlot,
    catalog: Catalog,
    limit: int | None,
    lookup: Callable[[ModelArtifact], np.ndarray | None],
) -> Ranked | None:
    """The servable head (``limit`` long) of the list ``lookup`` reads from the slot's
    artifact, with its version; None without a usable artifact or servable track."""
    usable = usable_artifact(slot, catalog)
    if usable is None:
        return None
    artifact, index = usable
    found = lookup(artifact)
    head = None if found is None else found[:limit]
    if head is None or not len(head):
        return None
    tracks, _ = index.servable(head)
    return Ranked(tracks.tolist(), artifact.version) if len(tracks) else None


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The model's next tracks after the anchor track, best first."""

    slot: ModelSlot
    anchor: Anchor
    catalog: Catalog
    limit: int | None = None

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        return _model_list(
            self.slot,
            self.catalog,
            self.limit,
            lambda artifact: artifact.neighbours(self.anchor(request, state)),
        )


@dataclass(frozen=True, slots=True)
class UserTop:
    """The model's best tracks for the user, best first."""

    slot: ModelSlot
    catalog: Catalog
    limit: int | None = None

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        return _model_list(
            self.slot, self.catalog, self.limit, lambda artifact: artifact.user_top(request.user)
        )


def query(artifact: ModelArtifact, anchor: int, user: int) -> np.ndarray | None:
    """context_emb[anchor] + user_emb[user], from the parts the model has; None if neither."""
    arrays = artifact.arrays
    out: np.ndarray | None = None
    context_emb, context_row = arrays.get(CONTEXT_EMB), artifact.track_row.get(anchor)
    if context_emb is not None and context_row is not None:
        out = context_emb[context_row]
    user_emb, user_row = arrays.get(USER_EMB), artifact.user_row.get(user)
    if user_emb is not None and user_row is not None:
        out = user_emb[user_row] if out is None else out + user_emb[user_row]
    return out


def rerank(
    artifact: ModelArtifact, anchor: int, user: int, tracks: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``tracks`` (with their model ``rows``, -1 for none) by ⟨context_emb[anchor] +
    user_emb[user], track_emb[row]⟩ + track_bias[row], best first, ties in candidate order
    (``botify.recommenders.ranking``). The model's own order where it lacks the embeddings or
    knows neither anchor nor user; tracks without a row keep their order after the scored
    ones."""
    return by_score(artifact.arrays, query(artifact, anchor, user), tracks, rows)


@dataclass(frozen=True, slots=True)
class Reranked:
    """The anchor's neighbours and the user's top tracks, re-ranked for this user and
    anchor with the model's embeddings (``rerank``; ``Ranking.RERANKED`` in the
    evaluation)."""

    slot: ModelSlot
    anchor: Anchor
    catalog: Catalog

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = usable_artifact(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        anchor = self.anchor(request, state)
        parts = [
            p
            for p in (artifact.neighbours(anchor), artifact.user_top(request.user))
            if p is not None and len(p)
        ]
        if not parts:
            return None
        # A track in both lists stays twice (with equal scores): policies skip repeats,
        # which costs less than deduplicating here.
        tracks, rows = index.servable(np.concatenate(parts))
        if not len(tracks):
            return None
        ranked = rerank(artifact, anchor, request.user, tracks, rows)
        return Ranked(ranked.tolist(), artifact.version)


@dataclass(frozen=True, slots=True)
class SessionTaste:
    """The neighbours of the session's ``sources`` best-liked tracks h, ranked by
    ⟨Σ w(h)·context_emb[h] / Σ w(h), track_emb[c]⟩ + bias[c] with w(h) = time(h)^power.

    One anchor is one noisy reading of what the user came for; every listen is another,
    worth as much as the user played of it, and a high power lets the few near-complete
    listens outvote the many half-hearted ones. Without embeddings, the lists' own order,
    best-liked track's first."""

    slot: ModelSlot
    catalog: Catalog
    power: float
    sources: int

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = usable_artifact(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        table = artifact.arrays.get(TRACK_NEIGHBOURS)
        if table is None:
            return None
        listens = session_listens(request, state)
        # Best-liked first; among equal listens, the most recent.
        best = sorted(range(len(listens)), key=lambda i: (-listens[i][1], -i))
        track_row = artifact.track_row
        rows: list[int] = []
        weights: list[float] = []
        for i in best[: self.sources]:
            track, time = listens[i]
            row = track_row.get(track)
            if row is not None:
                rows.append(row)
                weights.append(time**self.power)
        if not rows:
            return None
        # One gather for all the lists (np.asarray: plain arrays, not the memmap subclass,
        # whose per-operation overhead would dominate here). A track in several lists stays
        # several times: the policy serves one track, so repeats cost nothing.
        found = np.asarray(table).take(rows, axis=0).ravel()
        tracks, track_rows = index.servable(found[found != PAD])
        if not len(tracks):
            return None
        context_emb = artifact.arrays.get(CONTEXT_EMB)
        w = np.asarray(weights, dtype=np.float32)
        q = None
        if context_emb is not None and w.sum() > 0:
            # One listen's taste is its own vector, exactly (the evaluation ranks a held-out
            # query as this one-listen session, ``Ranking.SESSION_TASTE``); w·x / w may not be.
            context = np.asarray(context_emb)
            q = context[rows[0]] if len(rows) == 1 else (w @ context.take(rows, axis=0)) / w.sum()
        return Ranked(by_score(artifact.arrays, q, tracks, track_rows).tolist(), artifact.version)
