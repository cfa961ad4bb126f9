"""The one ranking: the offline evaluation ranks a held-out (user, previous track) exactly as
the serving source of the model's recipe answers a request by that user after that track,
for every registered model, on random artifacts with ties and unknown users and tracks."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

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
    DataWindow,
    ModelArtifact,
    ModelMeta,
)
from botify.catalog import Catalog, Track
from botify.evaluation import ranking_metrics
from botify.models import MODELS, RECIPES
from botify.models.registry import LearnedModel
from botify.recommenders import RecommenderContext, RecommendRequest
from botify.recommenders.base import Recommender
from botify.recommenders.model_recommender import ModelRecommender, ServingParams
from botify.recommenders.policies import CandidateSource
from botify.recommenders.random import Random
from botify.recommenders.ranking import Ranking, by_score, embedding_scores, rank_queries
from botify.state import UserState
from botify.training import example_schema

# Model track ids are a shuffled subset of 0..ID_SPACE; lists also name tracks the model has
# no row for (they are in the catalog, so serving keeps them).
ID_SPACE, TRACKS, USERS, WIDTH = 400, 300, 60, 12
CATALOG = Catalog(tuple(Track(t, f"a{t % 7}", f"t{t}") for t in range(ID_SPACE)))
QUERIES = 400


def random_artifact(name: str, seed: int, integer: bool) -> ModelArtifact:
    """Every array a model may export. ``integer``: small whole-number embeddings and biases
    (exact ties everywhere); else random floats with duplicated track rows (exact ties that
    only a position-independent score keeps)."""
    rng = np.random.default_rng(seed)
    # Float vectors as long as real ones: a BLAS product would round duplicates apart.
    dim = 4 if integer else 32
    track_ids = rng.permutation(ID_SPACE)[:TRACKS].astype(np.int64)
    user_ids = rng.permutation(3 * USERS)[:USERS].astype(np.int64)

    def lists(rows: int) -> np.ndarray:
        out = rng.integers(0, ID_SPACE, (rows, WIDTH)).astype(np.int64)
        # Ragged lists (padding at the end) and some rows with no list at all.
        lengths = rng.integers(0, WIDTH + 1, rows)
        out[np.arange(WIDTH)[None, :] >= lengths[:, None]] = PAD
        return out

    def emb(rows: int) -> np.ndarray:
        if integer:
            return rng.integers(-2, 3, (rows, dim)).astype(np.float32)
        return rng.standard_normal((rows, dim)).astype(np.float32)

    track_emb = emb(TRACKS)
    bias = (rng.integers(0, 2, TRACKS) * 0.5 if integer else rng.standard_normal(TRACKS)).astype(
        np.float32
    )
    if not integer:
        copies = rng.integers(0, TRACKS, (TRACKS // 4, 2))
        track_emb[copies[:, 0]] = track_emb[copies[:, 1]]
        bias[copies[:, 0]] = bias[copies[:, 1]]
    arrays = {
        TRACK_IDS: track_ids,
        TRACK_NEIGHBOURS: lists(TRACKS),
        USER_IDS: user_ids,
        USER_TOP: lists(USERS),
        CONTEXT_EMB: emb(TRACKS),
        TRACK_EMB: track_emb,
        USER_EMB: emb(USERS),
        TRACK_BIAS: bias,
    }
    return ModelArtifact(ModelMeta(name, 1, None, 0, DataWindow(0, 0, 0)), arrays)


def serving_source(model: str, context: RecommenderContext) -> CandidateSource:
    """The first candidate source reading ``model`` in the first recipe that serves it (its
    own recipes first): the one its registry entry says the evaluation ranks by."""
    own = [r.name for r in MODELS[model].recipes]
    others = sorted(n for n, r in RECIPES.items() if model in r.reads and n not in own)
    fallback: Recommender = Random(context)
    for name in (*own, *others):
        rec = RECIPES[name].build(context, ServingParams.parse({}), fallback)
        assert isinstance(rec, ModelRecommender)
        for source in rec.sources:
            if source.slot.name == model:  # type: ignore[attr-defined]
                return source
    raise AssertionError(f"no recipe serves {model}")


def served_artifact(model: str, integer: bool) -> tuple[ModelArtifact, CandidateSource]:
    """A random artifact of ``model`` loaded in its slot, and the source that serves it."""
    artifact = random_artifact(model, seed=len(model), integer=integer)
    context = RecommenderContext(CATALOG)
    context.slot(model).artifact = artifact
    return artifact, serving_source(model, context)


def served(source: CandidateSource, user: int, previous: int) -> list[int]:
    """What the source answers a request by ``user`` right after ``previous`` (a session's
    first listen, heard in full), repeats skipped as the policies skip them."""
    request = RecommendRequest(
        user, previous, 1.0, frozenset({previous}), (previous,), ((previous, 1.0),)
    )
    ranked = source(request, UserState(user))
    return first_of_each([] if ranked is None else [int(t) for t in ranked.tracks])


def first_of_each(tracks: list[int]) -> list[int]:
    return list(dict.fromkeys(t for t in tracks if t != PAD))


def queries(artifact: ModelArtifact, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(users, previous tracks): known and unknown users, tracks with and without a row."""
    rng = np.random.default_rng(seed)
    users = np.concatenate([artifact.arrays[USER_IDS], np.arange(3 * USERS)])
    return rng.choice(users, QUERIES), rng.integers(0, ID_SPACE + 20, QUERIES)


CASES = [(m, integer) for m in sorted(MODELS) for integer in (True, False)]


@pytest.mark.parametrize(("model", "integer"), CASES, ids=[f"{m}-{i}" for m, i in CASES])
def test_the_evaluation_ranks_each_query_as_the_models_serving_source_does(
    model: str, integer: bool
) -> None:
    artifact, source = served_artifact(model, integer)
    ranking = MODELS[model].evaluated_by
    assert ranking is not None, f"{model} names no evaluation ranking"
    users, previous = queries(artifact, seed=1)
    lists = rank_queries(artifact.arrays, ranking, previous, users)
    for i, (user, track) in enumerate(zip(users.tolist(), previous.tolist(), strict=True)):
        assert first_of_each(lists[i].tolist()) == served(source, user, track), (user, track)


@pytest.mark.parametrize(("model", "integer"), CASES, ids=[f"{m}-{i}" for m, i in CASES])
def test_the_evaluations_metrics_are_the_served_ranks_of_the_held_out_tracks(
    model: str, integer: bool
) -> None:
    # Each held-out track is a random one of the served list (or a track it lacks): its
    # NDCG is 1/log2(rank + 2) at its served rank, the previous track skipped.
    artifact, source = served_artifact(model, integer)
    users, previous = queries(artifact, seed=2)
    rng = np.random.default_rng(3)
    k = 2 * WIDTH
    rows, gain, hits = [], 0.0, 0
    for user, track in zip(users.tolist(), previous.tolist(), strict=True):
        answer = [t for t in served(source, user, track) if t != track]
        pick = int(rng.integers(0, len(answer) + 1))
        held = answer[pick] if pick < len(answer) else ID_SPACE + 99
        if held == track:
            continue
        rows.append((user, track, held))
        if pick < min(len(answer), k):
            hits += 1
            gain += 1 / math.log2(pick + 2)
    n = len(rows)
    holdout = pl.DataFrame(
        {
            "timestamp": list(range(n)),
            "user": [r[0] for r in rows],
            "session_start": [r[1] for r in rows],
            "context": [r[1] for r in rows],
            "track": [r[2] for r in rows],
            "time": [1.0] * n,
            "partition": [0] * n,
            "offset": list(range(n)),
            "recommender": ["random"] * n,
        },
        schema=example_schema(),
    )
    train = holdout.clear()
    got = ranking_metrics(artifact, holdout, train, k)
    assert got["evaluated"] == n
    assert got[f"hr@{k}"] == pytest.approx(hits / n)
    assert got[f"ndcg@{k}"] == pytest.approx(gain / n)


def test_ties_keep_the_candidate_order_and_tracks_without_a_row_go_last() -> None:
    arrays = {
        TRACK_IDS: np.arange(4, dtype=np.int64),
        TRACK_EMB: np.array([[1.0], [2.0], [1.0], [2.0]], np.float32),
    }
    tracks = np.array([0, 9, 1, 2, 8, 3], np.int64)
    rows = np.array([0, -1, 1, 2, -1, 3])
    q = np.ones(1, np.float32)
    assert by_score(arrays, q, tracks, rows).tolist() == [1, 3, 0, 2, 9, 8]
    # A batch: the same order per query, and a query without a vector keeps its order.
    batch = by_score(
        arrays, np.ones((2, 1), np.float32), np.stack([tracks, tracks]), np.stack([rows, rows]),
        np.array([True, False]),
    )  # fmt: skip
    assert batch.tolist() == [[1, 3, 0, 2, 9, 8], tracks.tolist()]


def test_a_score_has_the_same_bits_in_a_batch_and_alone_at_any_position() -> None:
    rng = np.random.default_rng(0)
    arrays = {TRACK_EMB: rng.standard_normal((500, 32)).astype(np.float32)}
    rows = rng.integers(0, 500, (20, 300))
    q = rng.standard_normal((20, 32)).astype(np.float32)
    batch = embedding_scores(arrays, q, rows)
    for i in range(20):
        cut = int(rng.integers(1, 300))
        alone = embedding_scores(arrays, q[i], rows[i, cut:])
        assert (alone == batch[i, cut:]).all()


def test_a_ranking_named_by_a_string_is_checked_not_taken_for_another_source() -> None:
    arrays = {
        TRACK_IDS: np.arange(3, dtype=np.int64),
        TRACK_NEIGHBOURS: np.array([[1, 2], [0, 2], [0, 1]], np.int64),
        USER_IDS: np.array([7], np.int64),
        USER_TOP: np.array([[2, 1]], np.int64),
    }
    anchors, users = np.array([0]), np.array([7])
    named = rank_queries(arrays, "user_top", anchors, users)  # type: ignore[arg-type]
    assert named.tolist() == rank_queries(arrays, Ranking.USER_TOP, anchors, users).tolist()
    assert named.tolist() == [[2, 1]]
    with pytest.raises(ValueError, match="nonsense"):
        rank_queries(arrays, "nonsense", anchors, users)  # type: ignore[arg-type]
    model = LearnedModel("strings", trainer="x:Y", evaluated_by="reranked")  # type: ignore[arg-type]
    assert model.evaluated_by is Ranking.RERANKED
    with pytest.raises(ValueError, match="nonsense"):
        LearnedModel("strings", trainer="x:Y", evaluated_by="nonsense")  # type: ignore[arg-type]


def test_a_model_without_track_rows_keeps_the_candidate_order() -> None:
    # A user's list of tracks the model has no embedding row for: nothing to score, and no
    # row 0 to read in their place.
    arrays = {
        TRACK_IDS: np.empty(0, np.int64),
        TRACK_EMB: np.empty((0, 2), np.float32),
        USER_IDS: np.array([7], np.int64),
        USER_EMB: np.ones((1, 2), np.float32),
        USER_TOP: np.array([[5, 6]], np.int64),
    }
    tracks = np.array([5, 6])
    assert by_score(arrays, np.ones(2, np.float32), tracks, np.array([-1, -1])).tolist() == [5, 6]
    assert rank_queries(arrays, Ranking.RERANKED, np.array([1]), np.array([7])).tolist() == [[5, 6]]


def test_a_model_without_users_ranks_by_the_anchor_alone() -> None:
    arrays = {
        TRACK_IDS: np.arange(3, dtype=np.int64),
        TRACK_NEIGHBOURS: np.array([[1, 2], [0, 2], [0, 1]], np.int64),
        CONTEXT_EMB: np.array([[1.0], [1.0], [1.0]], np.float32),
        TRACK_EMB: np.array([[0.0], [1.0], [2.0]], np.float32),
        USER_IDS: np.empty(0, np.int64),
        USER_TOP: np.empty((0, 2), np.int64),
        USER_EMB: np.empty((0, 1), np.float32),
    }
    got = rank_queries(arrays, Ranking.RERANKED, np.array([0, 7]), np.array([5, 5]))
    assert got.tolist() == [[2, 1], [PAD, PAD]]
