"""Every registered model on the planted world: the arrays it exports follow the artifact
contract, its lists are what serving's dot product ranks, and it learns the planted taste."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from botify.artifacts import (  # noqa: E402
    CONTEXT_EMB,
    PAD,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
)
from botify.evaluation import evaluate, split_holdout  # noqa: E402
from botify.model_store import validate_arrays  # noqa: E402
from botify.models import MODELS as REGISTRY  # noqa: E402
from botify.models import hyper_params  # noqa: E402
from services.trainer.models.dataset import Dataset  # noqa: E402
from services.trainer.models.next_track import NextTrack  # noqa: E402
from services.trainer.train import TrainResult, fit, train_model  # noqa: E402
from tests.unit.trainer.conftest import World, fast_settings  # noqa: E402

# The contract tests run on every registered model; the rest on the models of this suite.
REGISTERED = sorted(REGISTRY)
# Affinity learns a different planted taste (within a genre): test_affinity.py tests it.
MODELS = [m for m in REGISTERED if m != "affinity"]
K = 20
# Models that rank neighbours by cosine of track_emb; the others by the context dot product.
COSINE = {"dae", "lightgcn", "lightfm"}


@pytest.fixture(scope="module")
def split(world: World) -> tuple[pl.DataFrame, pl.DataFrame]:
    return split_holdout(world.frame, 1 / 6)


@pytest.fixture(scope="module")
def trained(world: World, split: tuple[pl.DataFrame, pl.DataFrame]) -> dict[str, TrainResult]:
    train, _ = split
    return {
        name: train_model(name, train, world.catalog, None, fast_settings()) for name in REGISTERED
    }


def same_artist_share(world: World, table: np.ndarray, rows: list[int], first: int = 5) -> float:
    ids = world.catalog.ids
    shares = []
    for row in rows:
        listed = table[row][table[row] != PAD][:first]
        if len(listed):
            shares.append(
                np.mean([world.artist(int(t)) == world.artist(int(ids[row])) for t in listed])
            )
    assert shares, "no row has a list"
    return float(np.mean(shares))


@pytest.mark.parametrize("name", REGISTERED)
def test_export_follows_the_artifact_contract_for_every_catalog_track_and_user(
    name: str,
    trained: dict[str, TrainResult],
    world: World,
    split: tuple[pl.DataFrame, pl.DataFrame],
) -> None:
    arrays = trained[name].arrays
    validate_arrays(arrays)  # the model store's own check: dtypes, ranks, row counts, finite
    np.testing.assert_array_equal(arrays[TRACK_IDS], world.catalog.ids)
    assert arrays[TRACK_NEIGHBOURS].shape == (len(world.catalog), K)
    if USER_IDS in arrays:
        np.testing.assert_array_equal(arrays[USER_IDS], np.unique(split[0]["user"].to_numpy()))
        for per_user in (USER_TOP, USER_EMB, USER_BIAS):
            if per_user in arrays:
                assert len(arrays[per_user]) == len(arrays[USER_IDS])
        if USER_TOP in arrays:
            assert arrays[USER_TOP].shape[1] == K
    widths = {arrays[e].shape[1] for e in (CONTEXT_EMB, TRACK_EMB, USER_EMB) if e in arrays}
    assert len(widths) <= 1  # one width, when there are embeddings at all


@pytest.mark.parametrize("name", REGISTERED)
def test_lists_hold_distinct_catalog_ids_padded_at_the_end_never_the_track_itself(
    name: str, trained: dict[str, TrainResult], world: World
) -> None:
    arrays = trained[name].arrays
    catalog = set(world.catalog.ids.tolist())
    for table, selves in (
        (arrays[TRACK_NEIGHBOURS], world.catalog.ids),
        (arrays.get(USER_TOP, np.empty((0, K), np.int64)), None),
    ):
        for i, row in enumerate(table):
            real = row[row != PAD]
            assert (row[len(real) :] == PAD).all(), "padding only at the end"
            assert set(real.tolist()) <= catalog and len(set(real.tolist())) == len(real)
            if selves is not None:
                assert selves[i] not in real


@pytest.mark.parametrize("name", MODELS)
def test_neighbours_are_the_exact_top_k_of_what_serving_computes(
    name: str, trained: dict[str, TrainResult]
) -> None:
    """Each neighbour list, scored the way its model ranks (context dot product plus bias, or
    cosine of the track vectors), is best first and beats every candidate left out."""
    arrays = trained[name].arrays
    track = arrays[TRACK_EMB].astype(np.float64)
    if name in COSINE:
        unit = track / np.maximum(np.linalg.norm(track, axis=1, keepdims=True), 1e-12)
        query, scores = unit, unit @ unit.T
    else:
        query = arrays[CONTEXT_EMB].astype(np.float64)
        scores = query @ track.T + arrays[TRACK_BIAS]
    candidates = np.abs(track).sum(1) > 0  # id-only models rank only tracks they trained
    row_of = {int(t): i for i, t in enumerate(arrays[TRACK_IDS])}
    checked = 0
    for r, row in enumerate(arrays[TRACK_NEIGHBOURS]):
        if np.abs(query[r]).sum() == 0:
            continue  # an untrained context of an id-only model has no list
        listed = [row_of[int(t)] for t in row if t != PAD]
        got = scores[r, listed]
        assert (np.diff(got) <= 1e-5).all(), "best first"
        rest = candidates.copy()
        rest[listed + [r]] = False
        if rest.any():
            assert got[-1] >= scores[r, rest].max() - 1e-5
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("name", [m for m in MODELS if m != "contextual"])
def test_user_top_is_the_exact_top_k_of_servings_user_dot_product(
    name: str, trained: dict[str, TrainResult]
) -> None:
    arrays = trained[name].arrays
    track = arrays[TRACK_EMB].astype(np.float64)
    scores = arrays[USER_EMB].astype(np.float64) @ track.T + arrays.get(TRACK_BIAS, 0.0)
    candidates = np.abs(track).sum(1) > 0
    row_of = {int(t): i for i, t in enumerate(arrays[TRACK_IDS])}
    for u, row in enumerate(arrays[USER_TOP]):
        listed = [row_of[int(t)] for t in row if t != PAD]
        got = scores[u, listed]
        assert (np.diff(got) <= 1e-5).all()
        rest = candidates.copy()
        rest[listed] = False
        assert got[-1] >= scores[u, rest].max() - 1e-5


@pytest.mark.parametrize(
    ("name", "least"), [(m, 0.4 if m == "contextual" else 0.8) for m in MODELS]
)
def test_neighbours_share_the_planted_artist(
    name: str, least: float, trained: dict[str, TrainResult], world: World
) -> None:
    # Random lists would share it 15 times in 127 (0.12).
    share = same_artist_share(
        world, trained[name].arrays[TRACK_NEIGHBOURS], list(range(len(world.catalog)))
    )
    assert share >= least


@pytest.mark.parametrize("name", MODELS)
def test_model_finds_held_out_listens_far_more_often_than_random(
    name: str, trained: dict[str, TrainResult], split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, holdout = split
    ranking = REGISTRY[name].evaluated_by
    metrics = evaluate(trained[name].arrays, holdout, train, fast_settings(), ranking)
    assert metrics["evaluated"] >= 20
    # Random top-10 lists over ~110 candidates hit about 0.09 of the time.
    assert metrics["hr@10"] >= 0.6
    assert 0 < metrics["ndcg@10"] <= metrics["hr@10"]


@pytest.mark.parametrize("name", ["contextual", "next_track"])
def test_listen_time_models_beat_the_mean_time_baselines(
    name: str, trained: dict[str, TrainResult], split: tuple[pl.DataFrame, pl.DataFrame]
) -> None:
    train, holdout = split
    metrics = evaluate(trained[name].arrays, holdout, train, fast_settings())
    assert metrics["mse"] < 0.6 * min(metrics["mse_global_mean"], metrics["mse_track_mean"])


@pytest.mark.parametrize("name", ["next_track", "lightfm"])
def test_a_never_played_track_is_placed_with_its_artist(
    name: str, trained: dict[str, TrainResult], world: World
) -> None:
    arrays = trained[name].arrays
    row_of = {int(t): i for i, t in enumerate(arrays[TRACK_IDS])}
    rows = [row_of[t] for t in world.unseen]
    # As context: its neighbours are its artist's tracks, from the artist embedding alone.
    assert same_artist_share(world, arrays[TRACK_NEIGHBOURS], rows) >= 0.5


@pytest.mark.parametrize("name", ["contextual", "dae", "lightgcn"])
def test_id_only_models_never_recommend_a_track_they_did_not_train_on(
    name: str, trained: dict[str, TrainResult], world: World
) -> None:
    arrays = trained[name].arrays
    listed = set(arrays[TRACK_NEIGHBOURS].ravel().tolist())
    listed |= set(arrays.get(USER_TOP, np.empty(0, np.int64)).ravel().tolist())
    assert not listed & set(world.unseen)


def test_next_track_exported_vectors_reproduce_the_models_own_prediction(world: World) -> None:
    """Serving computes ⟨context_emb[c] + user_emb[u], track_emb[t]⟩ + track_bias[t]: with the
    artist and genre parts folded in, that is exactly the model's score."""
    settings = fast_settings(next_track={"dim": 8, "epochs": 2, "batch_size": 256})
    data = Dataset.build(world.frame, world.catalog, settings.positive_threshold)
    hyper = hyper_params("next_track", settings)
    model = NextTrack.build(data, hyper)
    fit(
        model,
        NextTrack.examples(data),
        hyper,
        60.0,
        torch.Generator(),
        torch.device("cpu"),
    )
    from services.trainer.ranking import Ranker

    arrays = model.export(data, Ranker(k=5, block=64, budget_s=60))
    c, t, u = torch.tensor([0, 5, 17]), torch.tensor([3, 40, 90]), torch.tensor([0, 1, 2])
    with torch.no_grad():
        own = ((model.context_vectors(c) + model.user(u)) * model.track_vectors(t)).sum(1)
        own = (own + model.track_bias(t)).numpy()
    served = (
        (arrays[CONTEXT_EMB][c.numpy()] + arrays[USER_EMB][u.numpy()])
        * arrays[TRACK_EMB][t.numpy()]
    ).sum(1) + arrays[TRACK_BIAS][t.numpy()]
    np.testing.assert_allclose(served, own, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", REGISTERED)
def test_the_same_seed_trains_and_warm_starts_identical_arrays(
    name: str,
    world: World,
    split: tuple[pl.DataFrame, pl.DataFrame],
    trained: dict[str, TrainResult],
) -> None:
    """Reproducible runs: what a refactor of the models must keep bit for bit."""
    train, _ = split
    again = train_model(name, train, world.catalog, None, fast_settings())
    assert list(again.arrays) == list(trained[name].arrays)
    for key, array in trained[name].arrays.items():
        np.testing.assert_array_equal(again.arrays[key], array, err_msg=key)
    # A warm start on a shifted window (the rows of the new run and its parent differ).
    shifted = train.tail(train.height * 2 // 3)
    warm = [train_model(name, shifted, world.catalog, again.arrays, fast_settings()) for _ in "ab"]
    assert warm[0].metrics["warm_rows"] > 0
    assert list(warm[0].arrays) == list(warm[1].arrays)
    for key, array in warm[0].arrays.items():
        np.testing.assert_array_equal(warm[1].arrays[key], array, err_msg=key)
