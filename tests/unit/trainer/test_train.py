"""The training run: determinism, warm starts, budgets and what bad input gives."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from botify.artifacts import PAD, TRACK_IDS, TRACK_NEIGHBOURS  # noqa: E402
from botify.catalog import Catalog, Track  # noqa: E402
from botify.errors import ConfigError  # noqa: E402
from botify.model_store import validate_arrays  # noqa: E402
from botify.models import hyper_params  # noqa: E402
from services.trainer.models.dataset import TrainingDataError  # noqa: E402
from services.trainer.train import configure_torch, run_seed, train_model  # noqa: E402
from tests.unit.trainer.conftest import World, fast_settings, planted_world  # noqa: E402

MODELS = ["contextual", "dae", "lightfm", "lightgcn", "next_track"]


def short(**overrides: object):  # type: ignore[no-untyped-def]
    """Two epochs per model: enough to change every table, quick enough to run twice."""
    epochs = {m: {"epochs": 2} for m in MODELS}
    base = fast_settings()
    merged = {m: base.model_dump()[m] | epochs[m] for m in MODELS}
    return fast_settings(**(merged | overrides))


@pytest.fixture(scope="module")
def small_world() -> World:
    return planted_world(seed=1, users=24, rounds=3)


@pytest.mark.parametrize("name", MODELS)
def test_same_window_and_seed_give_identical_arrays(name: str, small_world: World) -> None:
    first = train_model(name, small_world.frame, small_world.catalog, None, short())
    again = train_model(name, small_world.frame, small_world.catalog, None, short())
    assert first.arrays.keys() == again.arrays.keys()
    for key, arr in first.arrays.items():
        np.testing.assert_array_equal(arr, again.arrays[key], err_msg=key)


@pytest.mark.parametrize("name", MODELS)
def test_another_seed_gives_another_model(name: str, small_world: World) -> None:
    first = train_model(name, small_world.frame, small_world.catalog, None, short())
    other = train_model(name, small_world.frame, small_world.catalog, None, short(seed=7))
    assert any(
        not np.array_equal(arr, other.arrays[key])
        for key, arr in first.arrays.items()
        if arr.dtype == np.float32
    )


def test_run_seed_follows_the_window_so_budget_cut_runs_do_not_replay_the_same_batches(
    small_world: World,
) -> None:
    frame = small_world.frame
    assert run_seed(0, frame) == run_seed(0, frame.clone())
    assert run_seed(0, frame) != run_seed(0, frame.head(frame.height - 1))
    assert run_seed(0, frame) != run_seed(1, frame)


def reordered(catalog: Catalog, extra: Track) -> Catalog:
    """The same tracks in reverse order plus one new one: rows move, ids stay."""
    return Catalog((extra, *reversed(catalog.tracks)))


# The float arrays a model keys by track or user id (its warm-start state and exports).
@pytest.mark.parametrize("name", MODELS)
def test_warm_start_reuses_the_parents_rows_by_id(name: str, small_world: World) -> None:
    parent = train_model(name, small_world.frame, small_world.catalog, None, short())
    new_track = Track(9999, "artist 0", "new", "genre 0")
    catalog = reordered(small_world.catalog, new_track)
    # A learning rate too small to move anything: the child is its parent, re-indexed.
    frozen = short(**{name: short().model_dump()[name] | {"lr": 1e-12, "epochs": 1}})
    child = train_model(name, small_world.frame, catalog, parent.arrays, frozen)
    assert child.metrics["warm_rows"] > 0
    p_row = {int(t): i for i, t in enumerate(parent.arrays[TRACK_IDS])}
    c_ids = child.arrays[TRACK_IDS]
    shared = np.array([i for i, t in enumerate(c_ids) if int(t) in p_row])
    back = np.array([p_row[int(c_ids[i])] for i in shared])
    keys = f"{name}_feature_keys"  # feature tables are keyed by feature, not by row
    f_back = None
    if keys in parent.arrays:
        p_key = {int(k): i for i, k in enumerate(parent.arrays[keys])}
        f_back = np.array([p_key[int(k)] for k in child.arrays[keys]])
    compared = 0
    for key, arr in parent.arrays.items():
        if arr.dtype != np.float32:
            continue
        mine = child.arrays[key]
        if key.startswith(name) and "feature" in key:
            np.testing.assert_allclose(mine, arr[f_back], atol=1e-4, err_msg=key)
        elif arr.shape[0] == len(parent.arrays[TRACK_IDS]):
            np.testing.assert_allclose(mine[shared], arr[back], atol=1e-4, err_msg=key)
        else:  # per user (the same window) or per model
            np.testing.assert_allclose(mine, arr, atol=1e-4, err_msg=key)
        compared += 1
    assert compared >= 2
    # The new track starts fresh: an id-only model knows nothing of it.
    new_row = int(np.flatnonzero(c_ids == 9999)[0])
    if name in ("contextual", "dae", "lightgcn"):
        assert (child.arrays[TRACK_NEIGHBOURS][new_row] == PAD).all()


def test_contextual_keeps_what_its_parent_learnt_of_tracks_the_window_dropped(
    small_world: World,
) -> None:
    frame = small_world.frame
    parent = train_model("contextual", frame, small_world.catalog, None, short())
    recent = frame.tail(frame.height // 3)
    gone = set(frame["session_start"].to_list()) - set(recent["session_start"].to_list())
    assert gone
    child = train_model("contextual", recent, small_world.catalog, parent.arrays, short())
    rows = [int(np.flatnonzero(small_world.catalog.ids == t)[0]) for t in sorted(gone)]
    assert np.abs(child.arrays["context_emb"][rows]).sum(1).all()
    assert (child.arrays[TRACK_NEIGHBOURS][rows, 0] != PAD).all()


def test_a_parent_of_another_shape_is_ignored_not_fatal(small_world: World) -> None:
    parent = train_model("next_track", small_world.frame, small_world.catalog, None, short())
    wider = short(next_track=hyper_params("next_track", short()).model_dump() | {"dim": 24})
    child = train_model("next_track", small_world.frame, small_world.catalog, parent.arrays, wider)
    assert child.metrics["warm_rows"] == 0
    validate_arrays(child.arrays)


def test_a_malformed_parent_is_ignored_and_the_model_trains_from_scratch(
    small_world: World,
) -> None:
    parent = train_model("dae", small_world.frame, small_world.catalog, None, short())
    broken = dict(parent.arrays, dae_encoder=parent.arrays["dae_encoder"][:3])
    child = train_model("dae", small_world.frame, small_world.catalog, broken, short())
    fresh = train_model("dae", small_world.frame, small_world.catalog, None, short())
    assert child.metrics["warm_rows"] == 0
    np.testing.assert_array_equal(child.arrays["track_emb"], fresh.arrays["track_emb"])


def test_unknown_model_is_a_config_error_naming_the_known_ones(small_world: World) -> None:
    with pytest.raises(ConfigError, match="next_track"):
        train_model("gpt", small_world.frame, small_world.catalog, None, short())


def test_examples_outside_the_catalog_or_range_are_dropped_and_counted(
    small_world: World,
) -> None:
    bad = small_world.frame.head(2).with_columns(
        pl.Series("track", [424242, 1000], dtype=pl.Int64),
        pl.Series("time", [1.0, float("nan")], dtype=pl.Float32),
    )
    frame = pl.concat([small_world.frame, bad])
    result = train_model("lightfm", frame, small_world.catalog, None, short())
    assert result.metrics["examples_dropped"] == 2
    assert result.metrics["examples"] == frame.height


def test_missing_columns_are_a_clear_error(small_world: World) -> None:
    with pytest.raises(TrainingDataError, match="context"):
        train_model(
            "next_track", small_world.frame.drop("context"), small_world.catalog, None, short()
        )


def test_a_window_without_positives_is_a_clear_error(small_world: World) -> None:
    frame = small_world.frame.with_columns(pl.lit(0.0, dtype=pl.Float32).alias("time"))
    for name in ("dae", "lightgcn", "lightfm"):
        with pytest.raises(TrainingDataError, match="nothing to learn"):
            train_model(name, frame, small_world.catalog, None, short())


def test_train_budget_stops_the_run_and_says_so(small_world: World) -> None:
    result = train_model(
        "next_track", small_world.frame, small_world.catalog, None, short(train_budget_s=1e-9)
    )
    assert result.metrics["budget_exhausted"] == 1.0
    assert result.metrics["steps"] == 0 and "loss" not in result.metrics  # no NaN in metrics
    validate_arrays(result.arrays)


def test_export_budget_pads_the_rows_it_did_not_reach_and_counts_them(
    small_world: World,
) -> None:
    result = train_model(
        "contextual", small_world.frame, small_world.catalog, None, short(export_budget_s=1e-9)
    )
    assert result.metrics["neighbours_rows"] == 0
    assert result.metrics["neighbours_rows_skipped"] > 0
    assert (result.arrays[TRACK_NEIGHBOURS] == PAD).all()
    validate_arrays(result.arrays)


def test_params_say_how_the_version_was_made(small_world: World) -> None:
    result = train_model("lightgcn", small_world.frame, small_world.catalog, None, short())
    assert result.params["model"] == "lightgcn"
    assert result.params["layers"] == 2 and result.params["top_k"] == 20
    assert result.params["device"] == "cpu"


def test_configure_torch_applies_the_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        assert configure_torch(short(threads=1)).type == "cpu"
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
