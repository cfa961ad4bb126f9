from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from botify.artifacts import PAD  # noqa: E402
from services.trainer.ranking import (  # noqa: E402
    NO_ROW,
    Ranker,
    by_frequency,
    drop_self,
    feature_groups,
    neighbour_lists,
    to_ids,
    user_lists,
)


def brute_top(queries: np.ndarray, items: np.ndarray, bias: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ items.T + bias
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def test_ranker_matches_a_brute_force_top_k_across_blocks() -> None:
    rng = np.random.default_rng(0)
    q, items, bias = rng.normal(size=(37, 5)), rng.normal(size=(50, 5)), rng.normal(size=50)
    ranker = Ranker(k=7, block=8, budget_s=60)
    got, done = ranker.top(
        "t",
        torch.as_tensor(q, dtype=torch.float64),
        torch.as_tensor(items, dtype=torch.float64),
        bias=torch.as_tensor(bias, dtype=torch.float64),
    )
    assert done == 37
    np.testing.assert_array_equal(got, brute_top(q, items, bias, 7))
    assert ranker.stats == {"t_rows": 37.0, "t_rows_skipped": 0.0}


def test_ranker_never_lists_the_excluded_item_and_pads_short_lists() -> None:
    items = torch.eye(3)
    queries = torch.eye(3)
    exclude = np.array([0, NO_ROW, 2])
    got, _ = Ranker(k=5, block=2, budget_s=60).top("t", queries, items, exclude=exclude)
    assert got.shape == (3, 5)
    assert 0 not in got[0] and 2 not in got[2]
    assert (got[:, 3:] == PAD).all()  # three candidates, one excluded where asked
    assert got[1, 0] == 1 and (got[0, :2] != PAD).all() and got[0, 2] == PAD


def test_ranker_out_of_budget_pads_the_rest_and_counts_it() -> None:
    ranker = Ranker(k=3, block=4, budget_s=0.0)
    got, done = ranker.top("t", torch.ones(10, 2), torch.ones(6, 2))
    assert done == 0 and (got == PAD).all()
    assert ranker.stats["t_rows_skipped"] == 10.0


def test_ranker_without_candidates_gives_empty_lists_not_skipped_rows() -> None:
    ranker = Ranker(k=3, block=4, budget_s=60)
    got, done = ranker.top("t", torch.ones(4, 2), torch.ones(0, 2))
    assert done == 4 and (got == PAD).all() and ranker.stats["t_rows_skipped"] == 0.0


def test_drop_self_removes_the_own_id_and_shifts_the_rest_left() -> None:
    lists = np.array([[5, 6, 7, 8], [1, 2, 3, 4], [9, PAD, PAD, PAD]])
    got = drop_self(lists, np.array([6, 0, 9]), 3)
    np.testing.assert_array_equal(got, [[5, 7, 8], [1, 2, 3], [PAD, PAD, PAD]])


def test_feature_groups_give_one_representative_per_feature_tuple() -> None:
    features = np.array([[0, 5], [1, 5], [0, 5], [1, 6]])
    reps, group = feature_groups(np.arange(4), features)
    assert len(reps) == 3
    assert group[0] == group[2] and len({group[0], group[1], group[3]}) == 3
    np.testing.assert_array_equal(features[reps[group]], features)


def test_by_frequency_puts_frequent_rows_first_and_breaks_ties_by_row() -> None:
    counts = np.array([1, 5, 5, 0, 2])
    np.testing.assert_array_equal(by_frequency(np.array([0, 1, 2, 3, 4]), counts), [1, 2, 4, 0, 3])


def test_to_ids_maps_item_indexes_to_catalog_ids_and_keeps_padding() -> None:
    track_ids = np.array([100, 200, 300])
    got = to_ids(np.array([[1, 0, PAD]]), np.array([2, 0]), track_ids)
    np.testing.assert_array_equal(got, [[100, 300, PAD]])


def test_neighbour_lists_give_unseen_rows_their_feature_groups_list_without_themselves() -> None:
    # Tracks 0-1 have artist A, 2-3 artist B. Only row 0 has an own vector; features point
    # A's tracks at A's and B's at B's.
    track_ids = np.array([10, 11, 12, 13])
    features = np.array([[0, 2], [0, 2], [1, 2], [1, 2]])
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    items = torch.stack([a, a * 0.9, b, b * 0.9])
    # A leaning slightly to B and the other way round, so no two candidates tie.
    like_a, like_b = torch.tensor([1.0, 0.1]), torch.tensor([0.1, 1.0])
    feature_queries = torch.stack([like_a, like_a, like_b, like_b])
    queries = feature_queries.clone()
    queries[0] = b  # row 0's own vector prefers B's tracks
    ranker = Ranker(k=2, block=2, budget_s=60)
    table = neighbour_lists(
        ranker,
        queries=queries,
        exact_rows=np.array([0]),
        items=items,
        item_rows=np.arange(4),
        track_ids=track_ids,
        feature_queries=feature_queries,
        track_features=features,
    )
    np.testing.assert_array_equal(table, [[12, 13], [10, 12], [13, 10], [12, 10]])
    assert ranker.stats["neighbours_rows"] == 1.0 and ranker.stats["neighbour_groups_rows"] == 2.0


def test_user_lists_fill_users_in_the_given_order() -> None:
    users = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    table = user_lists(
        Ranker(k=1, block=1, budget_s=60),
        users=users,
        order=np.array([1, 0]),
        items=items,
        item_rows=np.array([0, 1]),
        track_ids=np.array([7, 8]),
    )
    np.testing.assert_array_equal(table, [[8], [7]])
