"""How a trained model ranks candidate tracks for a query (anchor track, user): one
implementation, vectorised over a batch of queries, that serving's candidate sources
(``botify.recommenders.sources``) call with one query per request and the offline evaluation
(``botify.evaluation``) with blocks of held-out queries.

Score: ⟨q, track_emb[row]⟩ + track_bias[row], where q is the query's vector (for example
context_emb[anchor] + user_emb[user]). It is computed per candidate with the same float32
arithmetic whatever the candidate's position or the batch's shape, so one query gets the same
scores from serving and from the evaluation (a BLAS matrix product would not: its rounding
depends on where a row falls in its blocks).

Tie order, defined here once: best score first; candidates with equal scores keep their
candidate order (the model's list order, the anchor's neighbours before the user's top
tracks); candidates without a model row come after every scored one, in their order. A query
without a vector (the model has no track embeddings, or knows neither its anchor nor its
user) keeps the candidate order.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np

from botify.artifacts import (
    CONTEXT_EMB,
    PAD,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
)
from botify.recommenders.track_rows import TrackRows

Arrays = Mapping[str, np.ndarray]


class Ranking(StrEnum):
    """Which candidates a query gets and how they are ordered: the candidate sources of
    ``botify.recommenders.sources``, by name."""

    # ``Neighbours``: the anchor's neighbour list, in the model's order.
    NEIGHBOURS = "neighbours"
    # ``Reranked``: the anchor's neighbours then the user's top tracks, by the score with
    # q = context_emb[anchor] + user_emb[user] (from the parts the model has).
    RERANKED = "reranked"
    # ``SessionTaste`` over a session of one listen, the anchor: its neighbours by the score
    # with q = context_emb[anchor].
    SESSION_TASTE = "session_taste"
    # ``UserTop``: the user's top tracks, in the model's order.
    USER_TOP = "user_top"


def embedding_scores(arrays: Arrays, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """⟨q, track_emb[row]⟩ + track_bias[row] of model ``rows`` (all >= 0): one query ``q``
    (d,) with rows (k,), or one per list, (n, d) with rows (n, k). Each score is the same
    bits for the same query and row in either shape, at any position (module docstring)."""
    # take() is several times faster than fancy indexing for a few hundred rows; np.asarray
    # gives plain arrays, not the memmap subclass with its per-operation overhead.
    emb = np.asarray(arrays[TRACK_EMB]).take(rows, axis=0)
    # vecdot computes each dot product alone, over one row; matmul's BLAS kernel rounds a
    # row differently depending on where it falls in its blocks.
    scores: np.ndarray = np.vecdot(emb, q if q.ndim == 1 else q[:, None, :])
    bias = arrays.get(TRACK_BIAS)
    if bias is not None:
        scores += np.asarray(bias).take(rows)
    return scores


def by_score(
    arrays: Arrays,
    q: np.ndarray | None,
    tracks: np.ndarray,
    rows: np.ndarray,
    scored: np.ndarray | None = None,
) -> np.ndarray:
    """``tracks`` (with their model ``rows``, -1 for none) best first in the tie order of
    the module docstring. One query: ``q`` (d,), tracks (k,). A batch: ``q`` (n, d), tracks
    (n, k), and ``scored`` (n,) says which queries have a vector (the others keep their
    order). Unchanged without ``q`` or track embeddings."""
    if q is None or TRACK_EMB not in arrays:
        return tracks
    known = rows >= 0
    if not known.any():
        # Nothing to score (and with an empty track table, no row 0 to stand in).
        return tracks
    if known.all():
        scores = embedding_scores(arrays, q, rows)
    else:
        scores = np.where(known, embedding_scores(arrays, q, np.maximum(rows, 0)), -np.inf)
    if scored is not None:
        scores = np.where(scored[:, None], scores, 0.0)
    # Negated, so that a stable ascending sort is best first with ties in candidate order.
    order = np.argsort(-scores, axis=-1, kind="stable")
    if tracks.ndim == 1:
        return tracks.take(order)  # a few microseconds less than take_along_axis
    return np.take_along_axis(tracks, order, axis=-1)


def query_vectors(
    arrays: Arrays, anchor_rows: np.ndarray, user_rows: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray]:
    """(q, scored) for a batch: q (n, d) = context_emb[anchor] + user_emb[user] from the
    parts the model has (rows -1: none), and which queries have either part. q is None when
    the model has neither kind of vector."""
    context_emb, user_emb = arrays.get(CONTEXT_EMB), arrays.get(USER_EMB)
    q: np.ndarray | None = None
    scored = np.zeros(len(anchor_rows), dtype=bool)
    for emb, rows in ((context_emb, anchor_rows), (user_emb, user_rows)):
        if emb is None or len(emb) == 0:
            continue
        has = rows >= 0
        part = np.where(has[:, None], np.asarray(emb).take(np.maximum(rows, 0), axis=0), 0)
        # As serving: the sum where both parts exist, else the one that does (0 + x is x,
        # bit for bit).
        q = part if q is None else np.where(has[:, None], q + part, q)
        scored |= has
    return q, scored


def rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each of ``wanted`` (any shape) in ``ids`` (unique, any order), -1 where absent."""
    return TrackRows(ids)(wanted)


def _lists(arrays: Arrays, name: str, rows: np.ndarray) -> np.ndarray:
    """Table ``name``'s row for each query, all PAD where the row is -1 or the table absent."""
    table = arrays.get(name)
    if table is None or len(table) == 0:
        return np.full((len(rows), 0), PAD, dtype=np.int64)
    found = np.asarray(table).take(np.maximum(rows, 0), axis=0)
    return np.where(rows[:, None] >= 0, found, PAD)


def rank_queries(
    arrays: Arrays, ranking: Ranking, anchors: np.ndarray, users: np.ndarray
) -> np.ndarray:
    """Each query's (anchor track id, user id) ranked candidates as ``ranking``'s source
    serves them, (n, K), padded with PAD. Unlike serving, the lists keep the tracks outside
    the serving catalog and a track in both of a query's lists twice (policies skip
    repeats). ``ranking`` may be its name; an unknown one is a ValueError."""
    ranking = Ranking(ranking)
    track_rows = TrackRows(arrays[TRACK_IDS])
    anchor_rows = track_rows(anchors)
    user_rows = rows_of(arrays.get(USER_IDS, np.empty(0, np.int64)), users)
    if ranking is Ranking.USER_TOP:
        return _lists(arrays, USER_TOP, user_rows)
    neighbours = _lists(arrays, TRACK_NEIGHBOURS, anchor_rows)
    if ranking is Ranking.NEIGHBOURS:
        return neighbours
    if ranking is Ranking.RERANKED:
        tracks = np.concatenate([neighbours, _lists(arrays, USER_TOP, user_rows)], axis=1)
        q, scored = query_vectors(arrays, anchor_rows, user_rows)
    else:  # SESSION_TASTE, the only one left: Ranking() refused any other name
        tracks = neighbours
        q, scored = query_vectors(arrays, anchor_rows, np.full_like(user_rows, -1))
    rows = track_rows(tracks)
    return by_score(arrays, q, tracks, rows, scored)
