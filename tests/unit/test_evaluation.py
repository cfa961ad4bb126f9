"""Offline metrics on hand-checked tiny cases, the holdout split and the promotion rule."""

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
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
    DataWindow,
    ModelArtifact,
    ModelMeta,
)
from botify.evaluation import (
    better,
    evaluate,
    evaluation_ranking,
    listen_time_mse,
    predicts_listen_time,
    ranking_metrics,
    split_holdout,
)
from botify.recommenders.ranking import Ranking
from botify.settings import TrainerSettings
from botify.training import example_schema


def examples(*rows: tuple[int, int, int, float], start_ts: int = 0) -> pl.DataFrame:
    """(user, context, track, time) rows, one millisecond apart."""
    n = len(rows)
    return pl.DataFrame(
        {
            "timestamp": [start_ts + i for i in range(n)],
            "user": [r[0] for r in rows],
            "session_start": [r[1] for r in rows],
            "context": [r[1] for r in rows],
            "track": [r[2] for r in rows],
            "time": [r[3] for r in rows],
            "partition": [0] * n,
            "offset": list(range(n)),
            "recommender": ["random"] * n,
        },
        schema=example_schema(),
    )


def artifact(**arrays: np.ndarray) -> ModelArtifact:
    meta = ModelMeta("test", 1, None, 0, DataWindow(0, 0, 0))
    return ModelArtifact(meta, {TRACK_IDS: np.arange(10, 20, dtype=np.int64), **arrays})


def user_top(rows: dict[int, list[int]], k: int = 12) -> dict[str, np.ndarray]:
    users = np.array(sorted(rows), dtype=np.int64)
    table = np.full((len(users), k), PAD, dtype=np.int64)
    for i, u in enumerate(users):
        table[i, : len(rows[u])] = rows[u]
    return {USER_IDS: users, USER_TOP: table}


def neighbours(rows: dict[int, list[int]], k: int = 12) -> np.ndarray:
    table = np.full((10, k), PAD, dtype=np.int64)
    for track, listed in rows.items():
        table[track - 10, : len(listed)] = listed
    return table


# -- split -------------------------------------------------------------------------------------


def test_holdout_is_the_most_recent_slice_by_timestamp() -> None:
    frame = examples(*[(1, 10, 11, 1.0)] * 10).with_columns(
        pl.Series("timestamp", [5, 3, 9, 1, 7, 2, 8, 0, 6, 4])
    )
    train, holdout = split_holdout(frame, 0.3)
    assert sorted(holdout["timestamp"].to_list()) == [7, 8, 9]
    assert sorted(train["timestamp"].to_list()) == list(range(7))


def test_rows_sharing_the_boundary_timestamp_stay_in_train() -> None:
    frame = examples(*[(1, 10, 11, 1.0)] * 6).with_columns(
        pl.Series("timestamp", [1, 2, 3, 3, 3, 4])
    )
    train, holdout = split_holdout(frame, 0.5)
    assert holdout["timestamp"].to_list() == [4]
    assert train["timestamp"].max() < holdout["timestamp"].min()


def test_holdout_is_capped_at_max_rows() -> None:
    frame = examples(*[(1, 10, 11, 1.0)] * 100)
    _, holdout = split_holdout(frame, 0.5, max_rows=7)
    assert holdout.height == 7


def test_no_holdout_for_fraction_zero_or_a_window_too_small_to_split() -> None:
    frame = examples((1, 10, 11, 1.0))
    assert split_holdout(frame, 0.0)[1].is_empty()
    train, holdout = split_holdout(frame, 0.5)
    assert train.height == 1 and holdout.is_empty()


def test_holdout_fraction_outside_zero_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_holdout(examples((1, 10, 11, 1.0)), 1.0)


# -- ranking -----------------------------------------------------------------------------------


def test_user_lists_give_hit_rate_and_ndcg_by_the_rank_of_the_held_out_track() -> None:
    art = artifact(**user_top({1: [12, 13, 14], 2: [15, 16, 17]}))
    holdout = examples((1, 10, 13, 1.0), (2, 10, 19, 1.0))
    got = ranking_metrics(art, holdout, examples(), k=10)
    # User 1 finds 13 at rank 1 (0-based); user 2 misses.
    assert got == {"hr@10": 0.5, "ndcg@10": pytest.approx(0.5 / math.log2(3)), "evaluated": 2.0}


def test_training_positives_are_removed_before_cutting_at_k() -> None:
    # 11 is the user's 7th candidate; two earlier ones were liked in training (a skipped
    # one was not), so 11 moves up to rank 4 (0-based) and makes the top 5.
    art = artifact(**user_top({1: [12, 13, 14, 15, 16, 17, 11]}))
    train = examples((1, 30, 12, 0.9), (1, 30, 13, 1.0), (1, 30, 14, 0.1))
    holdout = examples((1, 30, 11, 1.0), start_ts=100)
    got = ranking_metrics(art, holdout, train, k=5)
    assert got["hr@5"] == 1.0
    assert got["ndcg@5"] == pytest.approx(1 / math.log2(4 + 2))
    assert ranking_metrics(art, holdout, examples(), k=5)["hr@5"] == 0.0


def test_a_held_out_track_the_user_already_liked_is_not_a_query() -> None:
    art = artifact(**user_top({1: [12]}))
    train = examples((1, 10, 12, 1.0))
    holdout = examples((1, 10, 12, 1.0), (1, 10, 13, 0.2), start_ts=10)
    assert ranking_metrics(art, holdout, train)["evaluated"] == 0.0


def test_queries_without_a_list_count_as_misses() -> None:
    art = artifact(**user_top({1: [12]}))
    holdout = examples((1, 10, 12, 1.0), (7, 10, 12, 1.0))
    got = ranking_metrics(art, holdout, examples())
    assert got["hr@10"] == 0.5 and got["evaluated"] == 2.0


def test_context_models_answer_with_the_previous_tracks_neighbours_minus_itself() -> None:
    art = artifact(
        **{TRACK_NEIGHBOURS: neighbours({10: [10, 11, 12], 11: [13, 14]})},
        **{CONTEXT_EMB: np.zeros((10, 2), np.float32)},
    )
    holdout = examples((1, 10, 12, 1.0), (1, 11, 14, 1.0), (1, 15, 12, 1.0))
    got = ranking_metrics(art, holdout, examples(), k=1)
    # Context 10 lists itself first (dropped), then 11: no hit at 1. Context 11 has 14 at
    # rank 1 (0-based) which misses a cut at 1; context 15 has no list.
    assert got["hr@1"] == 0.0
    got = ranking_metrics(art, holdout, examples(), k=2)
    assert got["hr@2"] == pytest.approx(2 / 3)
    assert got["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(3)) / 3)


def reranked_arrays() -> dict[str, np.ndarray]:
    # Tracks 11 and 12 point along the two axes; every context prefers 12, user 1 prefers 11.
    track = np.zeros((10, 2), np.float32)
    track[1], track[2], track[3] = [1.0, 0.0], [0.0, 1.0], [0.5, 0.0]
    return {
        TRACK_NEIGHBOURS: neighbours({10: [11, 12]}),
        CONTEXT_EMB: np.tile(np.array([[0.0, 0.1]], np.float32), (10, 1)),
        TRACK_EMB: track,
        TRACK_BIAS: np.zeros(10, np.float32),
        **user_top({1: [13]}),
        USER_EMB: np.array([[1.0, 0.0]], np.float32),
    }


def test_reranked_models_rank_by_context_plus_user_for_known_and_unknown_users() -> None:
    holdout = examples((1, 10, 11, 1.0), (2, 10, 12, 1.0))
    got = ranking_metrics(
        artifact(**reranked_arrays()), holdout, examples(), k=1, ranking=Ranking.RERANKED
    )
    # User 1: (0, 0.1) + (1, 0) puts 11 first. User 2 (unknown): the context alone, 12 first.
    assert got["hr@1"] == 1.0


def test_reranked_models_rank_the_users_top_tracks_with_the_neighbours() -> None:
    # User 1's top track 13 scores 0.5, between 11 (1.0) and 12 (0.1); a user the model does
    # not know has no top tracks, and the context ranks 12 first.
    holdout = examples((1, 10, 13, 1.0), (2, 10, 13, 1.0))
    art = artifact(**reranked_arrays())
    got = ranking_metrics(art, holdout, examples(), k=2, ranking=Ranking.RERANKED)
    assert got["hr@2"] == 0.5
    assert got["ndcg@2"] == pytest.approx(0.5 / math.log2(3))


def test_a_track_in_both_lists_counts_once() -> None:
    arrays = reranked_arrays() | user_top({1: [11, 12, 13]})
    # 11, 11, 13, 12, 12 by score: the repeats are skipped, so 12 is third.
    holdout = examples((1, 10, 12, 1.0))
    got = ranking_metrics(artifact(**arrays), holdout, examples(), k=3, ranking=Ranking.RERANKED)
    assert got["ndcg@3"] == pytest.approx(1 / math.log2(2 + 2))


def test_a_registered_models_artifact_is_ranked_by_its_registry_entry() -> None:
    meta = ModelMeta("next_track", 1, None, 0, DataWindow(0, 0, 0))
    registered = ModelArtifact(meta, {TRACK_IDS: np.arange(10, 20, dtype=np.int64)})
    assert evaluation_ranking(registered) is Ranking.RERANKED
    # Unregistered: by the arrays.
    assert evaluation_ranking(artifact(**reranked_arrays())) is Ranking.NEIGHBOURS
    assert evaluation_ranking(artifact(**user_top({1: [12]}))) is Ranking.USER_TOP


def test_user_based_models_are_queried_by_user_top() -> None:
    arrays = {TRACK_NEIGHBOURS: neighbours({10: [13]}), **user_top({1: [12]})}
    holdout = examples((1, 10, 12, 1.0))
    assert ranking_metrics(artifact(**arrays), holdout, examples())["hr@10"] == 1.0
    got = ranking_metrics(artifact(**arrays), holdout, examples(), ranking=Ranking.NEIGHBOURS)
    assert got["hr@10"] == 0.0


def test_only_positives_are_queries_and_an_empty_holdout_evaluates_nothing() -> None:
    art = artifact(**user_top({1: [12]}))
    holdout = examples((1, 10, 12, 0.49))
    assert ranking_metrics(art, holdout, examples()) == {
        "hr@10": 0.0,
        "ndcg@10": 0.0,
        "evaluated": 0.0,
    }
    assert ranking_metrics(art, holdout, examples(), positive_threshold=0.4)["hr@10"] == 1.0


def test_ranking_an_artifact_without_the_needed_lists_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="user_top"):
        ranking_metrics(
            artifact(), examples((1, 10, 12, 1.0)), examples(), ranking=Ranking.USER_TOP
        )


# -- listen time -------------------------------------------------------------------------------


def listen_time_arrays() -> dict[str, np.ndarray]:
    context = np.zeros((10, 1), np.float32)
    context[0] = 1.0  # track 10 as context
    track = np.zeros((10, 1), np.float32)
    track[1], track[2] = 0.5, 2.0  # tracks 11 and 12
    return {
        CONTEXT_EMB: context,
        TRACK_EMB: track,
        TRACK_BIAS: np.full(10, 0.1, np.float32),
        USER_IDS: np.array([1], np.int64),
        USER_EMB: np.array([[0.2]], np.float32),
    }


def test_listen_time_mse_against_the_mean_baselines_by_hand() -> None:
    train = examples((1, 10, 11, 1.0), (1, 10, 11, 0.0), (2, 10, 13, 0.5))  # mean 0.5
    holdout = examples(
        (1, 10, 11, 0.8),  # (1 + 0.2) * 0.5 + 0.1 = 0.7
        (2, 10, 11, 0.5),  # unknown user: 1 * 0.5 + 0.1 = 0.6
        (2, 10, 12, 1.0),  # 1 * 2 + 0.1 = 2.1, clipped to 1
        (2, 30, 11, 0.0),  # context outside the model: the global mean 0.5
        start_ts=10,
    )
    got = listen_time_mse(artifact(**listen_time_arrays()), holdout, train)
    assert got["mse"] == pytest.approx((0.1**2 + 0.1**2 + 0.0 + 0.5**2) / 4)
    assert got["mse_global_mean"] == pytest.approx((0.3**2 + 0.0 + 0.5**2 + 0.5**2) / 4)
    # Track 11's mean in train is 0.5; track 12 is new (the global mean).
    assert got["mse_track_mean"] == pytest.approx((0.3**2 + 0.0 + 0.5**2 + 0.5**2) / 4)
    assert got["mse_evaluated"] == 4.0


def test_listen_time_needs_a_model_that_predicts_it() -> None:
    assert predicts_listen_time(listen_time_arrays() | {TRACK_IDS: np.arange(10, 20)})
    assert not predicts_listen_time(artifact(**user_top({1: [12]})))
    with pytest.raises(ValueError, match="context_emb"):
        listen_time_mse(artifact(**user_top({1: [12]})), examples(), examples((1, 10, 11, 1.0)))


def test_evaluate_adds_listen_time_only_for_models_that_predict_it() -> None:
    settings = TrainerSettings(eval_k=5)
    train = examples((1, 10, 11, 1.0))
    holdout = examples((1, 10, 12, 1.0), start_ts=5)
    with_time = evaluate(
        artifact(**listen_time_arrays(), **{TRACK_NEIGHBOURS: neighbours({10: [12]})}),
        holdout,
        train,
        settings,
    )
    assert with_time["hr@5"] == 1.0 and "mse" in with_time
    without = evaluate(artifact(**user_top({1: [12]})), holdout, train, settings)
    assert without == {"hr@5": 1.0, "ndcg@5": 1.0, "evaluated": 1.0}


# -- promotion ---------------------------------------------------------------------------------


def test_better_accepts_ties_and_gains_and_refuses_losses() -> None:
    old = {"ndcg@10": 0.30, "evaluated": 100.0}
    assert better({"ndcg@10": 0.30, "evaluated": 100.0}, old)
    assert better({"ndcg@10": 0.31, "evaluated": 100.0}, old)
    assert not better({"ndcg@10": 0.29, "evaluated": 100.0}, old)


def test_better_tolerance_demands_a_margin_or_forgives_a_small_loss() -> None:
    old = {"ndcg@10": 0.30}
    assert not better({"ndcg@10": 0.305}, old, tolerance=0.01)
    assert better({"ndcg@10": 0.31}, old, tolerance=0.01)
    assert better({"ndcg@10": 0.295}, old, tolerance=-0.01)


def test_better_minimises_mse() -> None:
    assert better({"mse": 0.1}, {"mse": 0.2}, primary="mse")
    assert not better({"mse": 0.3}, {"mse": 0.2}, primary="mse")
    assert not better({"mse": 0.195}, {"mse": 0.2}, primary="mse", tolerance=0.01)


def test_better_with_nothing_to_beat_or_no_evidence_takes_the_new_version() -> None:
    assert better({"ndcg@10": 0.0}, None)
    assert better({"ndcg@10": 0.0}, {"hr@10": 0.5})
    nothing = {"ndcg@10": 0.0, "evaluated": 0.0}
    assert better(nothing, nothing, tolerance=0.01)


def test_better_refuses_a_new_version_without_a_finite_metric() -> None:
    assert not better({}, {"ndcg@10": 0.1})
    assert not better({"ndcg@10": float("nan")}, None)


def test_better_with_z_accepts_a_loss_within_the_holdouts_noise() -> None:
    old = {"ndcg@10": 0.30, "evaluated": 100.0}
    # One standard error at 0.30 over 100 queries is about 0.046.
    slightly_worse = {"ndcg@10": 0.28, "evaluated": 100.0}
    assert not better(slightly_worse, old)
    assert better(slightly_worse, old, z=1.96)


def test_better_with_z_refuses_a_loss_beyond_the_noise() -> None:
    old = {"ndcg@10": 0.30, "evaluated": 100.0}
    assert not better({"ndcg@10": 0.15, "evaluated": 100.0}, old, z=1.96)
    # The same loss is noise on 10 queries, and far beyond it on 10,000.
    assert better({"ndcg@10": 0.15, "evaluated": 10.0}, {**old, "evaluated": 10.0}, z=1.96)
    big = {"ndcg@10": 0.28, "evaluated": 10_000.0}
    assert not better(big, {**old, "evaluated": 10_000.0}, z=1.96)


def test_better_with_z_and_no_evidence_takes_the_new_version() -> None:
    nothing = {"ndcg@10": 0.0, "evaluated": 0.0}
    assert better(nothing, {"ndcg@10": 0.5, "evaluated": 0.0}, z=1.96)
    assert better({"ndcg@10": 0.1, "evaluated": 50.0}, None, z=1.96)


def test_better_with_z_still_demands_a_positive_tolerance() -> None:
    old = {"ndcg@10": 0.30, "evaluated": 100.0}
    assert not better({"ndcg@10": 0.30, "evaluated": 100.0}, old, tolerance=0.01, z=1.96)
    assert better({"ndcg@10": 0.31, "evaluated": 100.0}, old, tolerance=0.01, z=1.96)


def test_with_z_mse_is_refused_only_beyond_its_standard_error() -> None:
    old = {"mse": 0.140, "mse_se": 0.004, "mse_evaluated": 3000.0}
    noise = {"mse": 0.1415, "mse_se": 0.004, "mse_evaluated": 3000.0}
    assert not better(noise, old, primary="mse")
    assert better(noise, old, primary="mse", z=1.96)
    worse = {"mse": 0.150, "mse_se": 0.004, "mse_evaluated": 3000.0}
    assert not better(worse, old, primary="mse", z=1.96)
    # The first round after an upgrade: only the new version reports one, and it is used.
    assert better(noise, {"mse": 0.140, "mse_evaluated": 3000.0}, primary="mse", z=1.96)
    # Without a standard error the rule stays strict.
    assert not better({"mse": 0.21}, {"mse": 0.20}, primary="mse", z=10.0)
    assert better({"mse": 0.19}, {"mse": 0.20}, primary="mse", z=10.0)


def test_listen_time_mse_adds_the_bias_of_users_the_model_knows() -> None:
    train = examples((1, 10, 11, 1.0), (1, 10, 11, 0.0), (2, 10, 13, 0.5))
    holdout = examples((1, 10, 11, 0.8), (2, 10, 11, 0.5), start_ts=10)
    arrays = {**listen_time_arrays(), USER_BIAS: np.array([0.05], np.float32)}
    got = listen_time_mse(artifact(**arrays), holdout, train)
    # User 1: (1 + 0.2) * 0.5 + 0.1 + 0.05 = 0.75; user 2 is unknown: 0.6 as before.
    assert got["mse"] == pytest.approx((0.05**2 + 0.1**2) / 2)


def test_listen_time_mse_reports_its_standard_error() -> None:
    train = examples((1, 10, 11, 1.0), (1, 10, 11, 0.0), (2, 10, 13, 0.5))
    holdout = examples(
        (1, 10, 11, 0.8), (2, 10, 11, 0.5), (2, 10, 12, 1.0), (2, 30, 11, 0.0), start_ts=10
    )
    got = listen_time_mse(artifact(**listen_time_arrays()), holdout, train)
    errors = np.array([0.1**2, 0.1**2, 0.0, 0.5**2])
    assert got["mse_se"] == pytest.approx(errors.std(ddof=1) / 2)
