"""Track affinity: same-group neighbour lists ranked by ⟨v, v'⟩ + bias, and what the model
learns from a planted taste."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from botify.artifacts import PAD, TRACK_IDS, TRACK_NEIGHBOURS  # noqa: E402
from botify.catalog import Catalog, Track  # noqa: E402
from services.trainer.models.affinity import within_group_neighbours  # noqa: E402
from services.trainer.ranking import Ranker  # noqa: E402
from services.trainer.train import TrainResult, train_model  # noqa: E402
from tests.unit.trainer.conftest import World, fast_settings  # noqa: E402

K = 5
# Group sizes: one smaller than K + 1 (a short list), one of a single track (no list).
GROUPS = np.repeat([7, 3, 9, 5], [12, 4, 1, 9])


@pytest.fixture
def scored() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    gen = torch.Generator().manual_seed(3)
    n = len(GROUPS)
    vectors = torch.randn(n, 4, generator=gen)
    bias = torch.randn(n, generator=gen)
    return vectors, bias, 1000 + np.arange(n, dtype=np.int64) * 3


def neighbours(vectors: torch.Tensor, bias: torch.Tensor, ids: np.ndarray) -> np.ndarray:
    return within_group_neighbours(Ranker(K, 4, 60.0), vectors, bias, GROUPS, ids)


def test_lists_never_cross_groups_and_never_hold_the_track_itself(
    scored: tuple[torch.Tensor, torch.Tensor, np.ndarray],
) -> None:
    vectors, bias, ids = scored
    table = neighbours(vectors, bias, ids)
    assert table.shape == (len(ids), K) and table.dtype == np.int64
    group_of = dict(zip(ids.tolist(), GROUPS.tolist(), strict=True))
    for track, group, row in zip(ids.tolist(), GROUPS.tolist(), table, strict=True):
        listed = row[row != PAD].tolist()
        assert (row[len(listed) :] == PAD).all(), "padding only at the end"
        assert track not in listed
        assert {group_of[t] for t in listed} <= {group}
        # Every other member is listed, up to K.
        assert len(listed) == min(K, int((GROUPS == group).sum()) - 1)


def test_lists_are_the_exact_top_k_of_dot_product_plus_bias(
    scored: tuple[torch.Tensor, torch.Tensor, np.ndarray],
) -> None:
    vectors, bias, ids = scored
    table = neighbours(vectors, bias, ids)
    scores = (vectors @ vectors.T + bias).numpy()
    row_of = {t: i for i, t in enumerate(ids.tolist())}
    for r, row in enumerate(table):
        listed = [row_of[t] for t in row.tolist() if t != PAD]
        got = scores[r, listed]
        assert (np.diff(got) <= 1e-6).all(), "best first"
        others = [i for i in np.flatnonzero(GROUPS == GROUPS[r]) if i != r and i not in listed]
        if listed and others:
            assert got[-1] >= scores[r, others].max() - 1e-6


def test_the_bias_moves_a_track_up_every_list_of_its_group(
    scored: tuple[torch.Tensor, torch.Tensor, np.ndarray],
) -> None:
    vectors, bias, ids = scored
    star = int(np.flatnonzero(GROUPS == 7)[3])
    boosted = bias.clone()
    boosted[star] = 1e6
    table = neighbours(vectors, boosted, ids)
    for r in np.flatnonzero(GROUPS == 7):
        assert table[r, 0] == (ids[star] if r != star else table[r, 0])
    assert ids[star] not in table[GROUPS != 7]


def test_biggest_groups_are_ranked_first_so_a_budget_cut_spares_them(
    scored: tuple[torch.Tensor, torch.Tensor, np.ndarray],
) -> None:
    vectors, bias, ids = scored

    class OneGroupRanker(Ranker):
        """Ranks the first group it is given, then its budget is gone."""

        calls = 0

        def top(self, name, queries, items, **kw):  # type: ignore[no-untyped-def]
            self.calls += 1
            lists, done = super().top(name, queries, items, **kw)
            return (lists, done) if self.calls == 1 else (np.full_like(lists, PAD), 0)

    table = within_group_neighbours(OneGroupRanker(K, 4, 60.0), vectors, bias, GROUPS, ids)
    has_list = (table != PAD).any(axis=1)
    assert has_list.tolist() == (GROUPS == 7).tolist()  # group 7 has the most members


# -- the planted taste -----------------------------------------------------------------------


def share_of_artist(catalog: Catalog, arrays: dict[str, np.ndarray], rows: list[int]) -> float:
    ids = arrays[TRACK_IDS]
    shares = []
    for row in rows:
        listed = [t for t in arrays[TRACK_NEIGHBOURS][row].tolist() if t != PAD][:5]
        if listed:
            own = catalog.artist_of(int(ids[row]))
            shares.append(np.mean([catalog.artist_of(t) == own for t in listed]))
    assert shares, "no row has a list"
    return float(np.mean(shares))


def train_affinity(world: World, catalog: Catalog) -> TrainResult:
    cfg = fast_settings(affinity={"dim": 16, "batch_size": 256, "lr": 0.05, "epochs": 20})
    return train_model("affinity", world.frame, catalog, None, cfg)


@pytest.mark.parametrize("genres", [True, False], ids=["with genres", "without genres"])
def test_tracks_listened_together_become_neighbours(world: World, genres: bool) -> None:
    catalog = (
        world.catalog
        if genres
        else Catalog(tuple(Track(t.track, t.artist, t.title) for t in world.catalog.tracks))
    )
    arrays = train_affinity(world, catalog).arrays
    np.testing.assert_array_equal(arrays[TRACK_IDS], catalog.ids)
    played = [i for i, t in enumerate(catalog.ids.tolist()) if t not in world.unseen]
    # The shared artist part already pulls an untrained model's lists towards the artist
    # (0.89 of them with genres, 0.69 without): learning must finish the job.
    assert share_of_artist(catalog, arrays, played) >= 0.97
    if genres:
        for row, track in zip(arrays[TRACK_NEIGHBOURS], catalog.ids.tolist(), strict=True):
            genre = catalog.by_id[track].genre
            assert {catalog.by_id[t].genre for t in row.tolist() if t != PAD} <= {genre}


def test_a_never_heard_track_is_placed_with_its_artist(world: World) -> None:
    arrays = train_affinity(world, world.catalog).arrays
    row_of = {int(t): i for i, t in enumerate(arrays[TRACK_IDS])}
    # Untrained: 0.85 (the artist part alone).
    assert share_of_artist(world.catalog, arrays, [row_of[t] for t in world.unseen]) >= 0.95


def test_each_users_bias_is_fitted_and_carried_into_the_next_version(world: World) -> None:
    from botify.artifacts import USER_BIAS, USER_IDS

    # User 0 now plays everything through, so their bias must rise above everyone else's.
    keen = world.frame["user"].min()
    frame = world.frame.with_columns(
        time=pl.when(pl.col("user") == keen).then(1.0).otherwise(pl.col("time"))
    )
    first = train_model("affinity", frame, world.catalog, None, fast_settings()).arrays
    bias = dict(zip(first[USER_IDS].tolist(), first[USER_BIAS].tolist(), strict=True))
    assert set(bias) == set(frame["user"].unique().to_list())
    assert bias[keen] == max(bias.values()) and bias[keen] > 0.5
    assert abs(np.mean(list(bias.values()))) < 1e-5  # centred: the mean is in the offset
    # Warm-started on the newest half with a step too small to move anything, the parent's
    # biases are what the new version holds, found by user id (the user order differs).
    newest = frame.sort("timestamp").tail(frame.height // 2)
    still = fast_settings(affinity={"dim": 16, "epochs": 1, "lr": 1e-6})
    second = train_model("affinity", newest, world.catalog, first, still).arrays
    again = dict(zip(second[USER_IDS].tolist(), second[USER_BIAS].tolist(), strict=True))
    assert again and all(again[u] == pytest.approx(bias[u], abs=1e-3) for u in again)


def test_a_parent_from_before_user_biases_still_warm_starts_the_rest(world: World) -> None:
    from botify.artifacts import USER_BIAS, USER_IDS

    first = train_model("affinity", world.frame, world.catalog, None, fast_settings())
    older = {k: v for k, v in first.arrays.items() if k not in (USER_IDS, USER_BIAS)}
    second = train_model("affinity", world.frame, world.catalog, older, fast_settings())
    # Every track and feature row came from the parent; the users start from zero.
    assert second.metrics["warm_rows"] == len(world.catalog) + len(
        first.arrays["affinity_feature_keys"]
    )
    assert len(second.arrays[USER_BIAS]) == len(second.arrays[USER_IDS])
