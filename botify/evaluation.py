"""Offline evaluation of model artifacts on a held-out window, and the promotion rule.

Works on any ``ModelArtifact`` (or its arrays), so the trainer scores a new version and the
one in service on the same held-out examples. Everything here is numpy.

Ranking: each held-out positive (a listen of at least the positive threshold) is a query
(user, previous track). It gets the ranked list serving's candidate source would answer a
request by that user right after that track with, computed by the same code
(``botify.recommenders.ranking.rank_queries``), with the source the model's registry entry
names (``LearnedModel.evaluated_by``; unregistered arrays: by the arrays, see there):

- ``neighbours``: the previous track's neighbour list (``Neighbours``, contextual);
- ``reranked``: the previous track's neighbours and the user's top tracks, re-ranked by
  ⟨context[prev] + user[u], track⟩ + bias from the parts the model has (``Reranked``,
  next_track);
- ``session_taste``: ``SessionTaste`` on a session whose one listen is the previous track,
  i.e. its neighbours by ⟨context[prev], track⟩ + bias (affinity; serving weighs every
  listen of the session, which a held-out row does not carry);
- ``user_top``: the user's top tracks (``UserTop``: dae, lightgcn, lightfm).

The anchor is always the previous track: a recipe anchored elsewhere (the last liked track,
the session's start) or falling back to a second source is evaluated on that first source
anchored on the previous track, and serving limits (a recipe's top k) are not applied. Ties
are in the ranking module's order. From a list we remove padding, repeats (a track in both
lists: policies skip it), the previous track (serving never repeats it) and the tracks the
user already had as positives in the training window, then cut at k: HR@k is the share of
queries whose track is in the cut, NDCG@k its 1/log2(rank + 2). A query the model has no
list for is a miss. A positive whose track the user already liked in training cannot be a
hit under that removal, so it is not a query; neither is a repeat of the previous track.
Serving also drops tracks outside its catalog; the evaluation keeps every model track.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl

from botify.artifacts import (
    CONTEXT_EMB,
    LINK_SIGMOID,
    PAD,
    SCORE_LINK,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
    ModelArtifact,
)
from botify.models import MODELS
from botify.recommenders.ranking import Ranking, rank_queries
from botify.recommenders.ranking import rows_of as _rows
from botify.settings import TrainerSettings

Arrays = Mapping[str, np.ndarray]
# Metrics where lower is better; every other one is maximised.
_LOWER_IS_BETTER = ("mse", "loss")
# Held-out rows ranked at once: a re-rank gathers block × K × d floats (about 26 MB for
# 200 candidates of 64 floats); blocks of 2048 measured slower.
_BLOCK = 512
_ID_BITS = 31  # ids are < 2**31 (botify.events.MAX_ID), so (user, track) packs in an int64


def split_holdout(
    frame: pl.DataFrame, fraction: float, max_rows: int | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(train, holdout): the most recent ``fraction`` of the rows (at most ``max_rows``) by
    ``timestamp`` are held out. Rows sharing the boundary timestamp stay in train, so every
    held-out row is strictly later than every training row."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    if "timestamp" not in frame.columns:
        raise ValueError("the examples have no 'timestamp' column")
    n = frame.height
    held = min(math.ceil(n * fraction), n if max_rows is None else max_rows)
    if held <= 0 or n == 0:
        return frame, frame.clear()
    if held >= n:
        # Nothing would be left to train on: the window is too small to split.
        return frame, frame.clear()
    ordered = frame.sort("timestamp", maintain_order=True)
    cut = ordered["timestamp"][n - held - 1]
    return ordered.filter(pl.col("timestamp") <= cut), ordered.filter(pl.col("timestamp") > cut)


def evaluate(
    artifact: ModelArtifact | Arrays,
    holdout: pl.DataFrame,
    train: pl.DataFrame,
    settings: TrainerSettings,
    ranking: Ranking | None = None,
) -> dict[str, float]:
    """Every metric that applies to ``artifact``: ranking (``ranking``: see
    ``ranking_metrics``), and listen-time MSE for models that predict it (``context_emb``
    and ``track_emb``)."""
    threshold = settings.positive_threshold
    out = ranking_metrics(
        artifact, holdout, train, settings.eval_k, positive_threshold=threshold, ranking=ranking
    )
    if predicts_listen_time(artifact):
        out |= listen_time_mse(artifact, holdout, train)
    return out


def predicts_listen_time(artifact: ModelArtifact | Arrays) -> bool:
    """Whether ⟨context + user, track⟩ + bias is a listen-time prediction for this model."""
    arrays = _arrays(artifact)
    return CONTEXT_EMB in arrays and TRACK_EMB in arrays and TRACK_BIAS in arrays


def ranking_metrics(
    artifact: ModelArtifact | Arrays,
    holdout: pl.DataFrame,
    train: pl.DataFrame,
    k: int = 10,
    *,
    positive_threshold: float = 0.5,
    ranking: Ranking | None = None,
) -> dict[str, float]:
    """``{"hr@k", "ndcg@k", "evaluated"}`` over the held-out positives (module docstring).
    ``ranking`` forces the source the lists come from; None takes the one the artifact's
    registered model names (``evaluation_ranking``)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    arrays = _arrays(artifact)
    mode = evaluation_ranking(artifact) if ranking is None else Ranking(ranking)
    needed = USER_TOP if mode is Ranking.USER_TOP else TRACK_NEIGHBOURS
    if needed not in arrays and not (mode is Ranking.RERANKED and USER_TOP in arrays):
        raise ValueError(f"the artifact has no {needed} to rank by {mode.value}")
    users, contexts, tracks = _positives(holdout, positive_threshold)
    liked = _liked_keys(train, positive_threshold)
    fresh = ~_contains(liked, _pack(users, tracks)) & (contexts != tracks)
    users, contexts, tracks = users[fresh], contexts[fresh], tracks[fresh]
    n = len(tracks)
    if n == 0:
        return {f"hr@{k}": 0.0, f"ndcg@{k}": 0.0, "evaluated": 0.0}
    hits, gain = 0, 0.0
    for s in range(0, n, _BLOCK):
        e = min(s + _BLOCK, n)
        lists = rank_queries(arrays, mode, contexts[s:e], users[s:e])
        drop = (lists == PAD) | (lists == contexts[s:e, None]) | _repeats(lists)
        drop |= _contains(liked, _pack(np.broadcast_to(users[s:e, None], lists.shape), lists))
        rank = np.cumsum(~drop, axis=1) - 1
        hit = ~drop & (rank < k) & (lists == tracks[s:e, None])
        found = hit.any(axis=1)
        hits += int(found.sum())
        gain += float((1.0 / np.log2(rank[hit] + 2.0)).sum())
    return {f"hr@{k}": hits / n, f"ndcg@{k}": gain / n, "evaluated": float(n)}


def evaluation_ranking(artifact: ModelArtifact | Arrays) -> Ranking:
    """The source a held-out query of ``artifact`` is ranked by: its registered model's
    ``evaluated_by``; otherwise (unregistered, or arrays alone) the neighbours when it has
    them and context vectors or no user lists, else the user's top tracks."""
    if isinstance(artifact, ModelArtifact):
        model = MODELS.get(artifact.meta.name)
        if model is not None and model.evaluated_by is not None:
            return model.evaluated_by
    arrays = _arrays(artifact)
    if TRACK_NEIGHBOURS in arrays and (CONTEXT_EMB in arrays or USER_TOP not in arrays):
        return Ranking.NEIGHBOURS
    return Ranking.USER_TOP


def listen_time_mse(
    artifact: ModelArtifact | Arrays, holdout: pl.DataFrame, train: pl.DataFrame
) -> dict[str, float]:
    """Mean squared error of the predicted listen time over every held-out row, with two
    baselines from ``train``: the global mean time and each track's mean time (the global
    mean for tracks train never saw). The prediction is ⟨context[c] + user[u], track[t]⟩ +
    bias[t] clipped to [0, 1], or through a sigmoid when the artifact's ``score_link`` says
    the score is a logit; without the user part for a user the model does not know, and the
    global mean for a track or context outside the model's rows. A model with a
    ``user_bias`` adds it for the users it knows."""
    arrays = _arrays(artifact)
    if not predicts_listen_time(arrays):
        raise ValueError("the artifact has no context_emb, track_emb and track_bias")
    if train.is_empty():
        raise ValueError("listen-time baselines need a non-empty training window")
    users, contexts, tracks, times = (
        holdout[c].to_numpy() for c in ("user", "context", "track", "time")
    )
    if len(times) == 0:
        return {
            "mse": 0.0,
            "mse_se": 0.0,
            "mse_global_mean": 0.0,
            "mse_track_mean": 0.0,
            "mse_evaluated": 0.0,
        }
    times = times.astype(np.float64)
    mean = float(train["time"].cast(pl.Float64).mean())  # type: ignore[arg-type]
    per_track = train.group_by("track").agg(pl.col("time").cast(pl.Float64).mean())
    t_rows = _rows(per_track["track"].to_numpy(), tracks)
    track_mean = np.where(t_rows >= 0, per_track["time"].to_numpy()[np.maximum(t_rows, 0)], mean)
    ids = arrays[TRACK_IDS]
    crow, trow = _rows(ids, contexts), _rows(ids, tracks)
    urow = _rows(arrays.get(USER_IDS, np.empty(0, np.int64)), users)
    pred = np.full(len(times), mean)
    known = (crow >= 0) & (trow >= 0)
    query = arrays[CONTEXT_EMB][crow[known]].astype(np.float64)
    user_emb = arrays.get(USER_EMB)
    if user_emb is not None:
        has_user = urow[known] >= 0
        query[has_user] += user_emb[urow[known][has_user]]
    score = np.einsum("nd,nd->n", query, arrays[TRACK_EMB][trow[known]])
    score = score + arrays[TRACK_BIAS][trow[known]]
    user_bias = arrays.get(USER_BIAS)
    if user_bias is not None:
        has_user = urow[known] >= 0
        score[has_user] += user_bias[urow[known][has_user]]
    link = arrays.get(SCORE_LINK)
    if link is not None and int(link[0]) == LINK_SIGMOID:
        pred[known] = 1.0 / (1.0 + np.exp(-np.clip(score, -50.0, 50.0)))
    else:
        pred[known] = np.clip(score, 0.0, 1.0)
    errors = (pred - times) ** 2
    return {
        "mse": float(errors.mean()),
        # The standard error of that mean: how far holdout noise alone moves it.
        "mse_se": float(errors.std(ddof=1) / np.sqrt(len(errors))) if len(errors) > 1 else 0.0,
        "mse_global_mean": float(np.mean((mean - times) ** 2)),
        "mse_track_mean": float(np.mean((track_mean - times) ** 2)),
        "mse_evaluated": float(len(times)),
    }


def better(
    new: Mapping[str, float],
    old: Mapping[str, float] | None,
    primary: str = "ndcg@10",
    tolerance: float = 0.0,
    z: float = 0.0,
) -> bool:
    """Whether ``new`` should replace ``old``: its ``primary`` is at least ``old``'s plus
    ``tolerance`` (above 0 demands a margin, below 0 forgives a small regression; a tie goes
    to the newer version, trained on fresher data). ``mse``/``loss`` metrics are minimised,
    the others maximised. ``new`` without a finite ``primary`` is refused; with nothing to
    beat (no ``old`` value) or no held-out evidence (nothing evaluated) it is accepted.
    With ``z`` > 0 a metric is refused only when it is worse by more than ``z`` standard
    errors of the held-out mean, so holdout noise alone does not refuse: for ranking, a
    hit-rate bound (NDCG per query is in [0, 1] with a variance no larger than p(1 − p));
    for a minimised metric, its ``<primary>_se`` as the evaluation reports it (the served
    version's, else the new one's)."""
    value = new.get(primary)
    if value is None or not math.isfinite(value):
        return False
    reference = None if old is None else old.get(primary)
    if reference is None or not math.isfinite(reference):
        return True
    evidence = "mse_evaluated" if primary.startswith("mse") else "evaluated"
    if new.get(evidence, 1.0) <= 0 and old.get(evidence, 1.0) <= 0:  # type: ignore[union-attr]
        return True
    if primary.startswith(_LOWER_IS_BETTER):
        se = old.get(f"{primary}_se", new.get(f"{primary}_se", 0.0))  # type: ignore[union-attr]
        if z > 0 and se and value <= reference + z * se:
            return tolerance <= 0 or value <= reference - tolerance
        return value <= reference - tolerance
    n = new.get(evidence, 0.0)
    if z > 0 and n > 0 and value >= reference - z * math.sqrt(reference * (1 - reference) / n):
        return tolerance <= 0 or value >= reference + tolerance
    return value >= reference + tolerance


def _arrays(artifact: ModelArtifact | Arrays) -> Arrays:
    return artifact.arrays if isinstance(artifact, ModelArtifact) else artifact


def _positives(frame: pl.DataFrame, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = frame.filter(pl.col("time") >= threshold)
    return tuple(pos[c].to_numpy().astype(np.int64) for c in ("user", "context", "track"))  # type: ignore[return-value]


def _pack(users: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    return (np.asarray(users, np.int64) << _ID_BITS) | np.asarray(tracks, np.int64)


def _liked_keys(train: pl.DataFrame, threshold: float) -> np.ndarray:
    pos = train.filter(pl.col("time") >= threshold)
    return np.unique(_pack(pos["user"].to_numpy(), pos["track"].to_numpy()))


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Membership of ``keys`` (any shape) in the sorted unique ``sorted_keys``."""
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    found: np.ndarray = sorted_keys[pos] == keys
    return found


def _repeats(lists: np.ndarray) -> np.ndarray:
    """Where a list repeats a track it already holds earlier (its first place counts)."""
    order = np.argsort(lists, axis=1, kind="stable")
    ordered = np.take_along_axis(lists, order, axis=1)
    later = np.zeros(lists.shape, dtype=bool)
    later[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    out = np.zeros(lists.shape, dtype=bool)
    np.put_along_axis(out, order, later, axis=1)
    return out
