from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from botify.catalog import Catalog, Track, generate_catalog, load_catalog, write_catalog
from botify_sim.world import (
    HIDDEN_DIR,
    HIDDEN_FILE,
    World,
    generate_world,
    load_world,
    nearest_rows,
    save_world,
    world_from_catalog,
)
from tests.unit.sim.worlds import small_config, small_world

ARRAYS = (
    "embeddings",
    "artist_index",
    "popularity",
    "interests",
    "bias",
    "sharpness",
    "start_candidates",
)


def assert_same_world(a: World, b: World) -> None:
    assert a.catalog.tracks == b.catalog.tracks
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert (a.config, a.seed) == (b.config, b.seed)


def cosine(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sum(x * y, axis=-1) / (np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1))


def test_same_seed_gives_the_same_world_byte_for_byte(tmp_path: Path) -> None:
    a, b = generate_world(small_config(5)), generate_world(small_config(5))
    assert_same_world(a, b)
    save_world(a, tmp_path / "a")
    save_world(b, tmp_path / "b")
    for name in ("catalog.jsonl", "manifest.json", f"{HIDDEN_DIR}/{HIDDEN_FILE}"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_another_seed_gives_another_world() -> None:
    a, b = small_world(3), generate_world(small_config(4))
    assert not np.array_equal(a.embeddings, b.embeddings)
    assert not np.array_equal(a.interests, b.interests)


def test_world_has_the_configured_sizes() -> None:
    w, cfg = small_world(), small_config()
    assert len(w.catalog) == cfg.world.tracks
    assert len(w.catalog.artist_tracks) == cfg.world.artists  # every artist has a track
    assert len({t.genre for t in w.catalog}) == cfg.world.genres
    assert w.embeddings.shape == (cfg.world.tracks, cfg.world.dim)
    assert w.interests.shape == (cfg.world.users, cfg.world.interests)
    assert w.start_candidates.shape == (cfg.world.users, cfg.world.interests, cfg.user.nearest)
    assert w.users == cfg.world.users
    # Interests are distinct tracks of the world.
    assert all(len(set(row)) == cfg.world.interests for row in w.interests.tolist())
    assert w.interests.min() >= 0 and w.interests.max() < cfg.world.tracks


def test_artist_sizes_and_popularity_are_skewed() -> None:
    w = small_world()
    sizes = np.sort([len(t) for t in w.catalog.artist_tracks.values()])[::-1]
    assert sizes[0] >= 10 * np.median(sizes)
    assert sizes[: len(sizes) // 10].sum() >= 0.3 * sizes.sum()  # top 10 % of artists
    pop = np.sort(w.popularity)[::-1]
    assert pop.sum() == pytest.approx(1.0)
    assert pop[: len(pop) // 100].sum() >= 0.1  # top 1 % of tracks
    # Users' interests follow popularity: the top 1 % of tracks hold far more than 1 %.
    top = set(np.argsort(-w.popularity)[: len(pop) // 100].tolist())
    assert np.isin(w.interests, list(top)).mean() >= 0.05


def test_tracks_of_one_artist_and_of_one_genre_lie_close_together() -> None:
    w = small_world()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(w.catalog), (2, 20_000))
    same_artist = w.artist_index[a] == w.artist_index[b]
    genre = np.array([t.genre for t in w.catalog])
    same_genre = genre[a] == genre[b]
    sim = cosine(w.embeddings[a], w.embeddings[b])
    distinct = a != b
    # Pairs within one artist, from the artist's own track list for enough of them.
    pairs = [(t[0], t[1]) for t in w.catalog.artist_tracks.values() if len(t) >= 2]
    x, y = np.array(pairs).T
    intra_artist = cosine(w.embeddings[x], w.embeddings[y]).mean()
    inter_artist = sim[~same_artist & distinct].mean()
    same_genre_other_artist = sim[same_genre & ~same_artist].mean()
    other_genre = sim[~same_genre].mean()
    # The genre outweighs the artist in the committed world (genre_weight 2, artist_weight
    # 0.7): an artist's tracks are still closer than genre-mates, by less than genres differ.
    assert intra_artist > same_genre_other_artist + 0.05
    assert intra_artist > inter_artist + 0.2
    assert same_genre_other_artist > other_genre + 0.2


def test_a_mainstream_direction_brings_the_most_popular_tracks_together() -> None:
    def top_similarity(weight: float) -> tuple[float, float]:
        w = generate_world(small_config(mainstream_weight=weight, mainstream_power=4.0))
        unit = w.embeddings / np.linalg.norm(w.embeddings, axis=1, keepdims=True)
        order = np.argsort(-w.popularity)
        top, rest = unit[order[:100]], unit[order[-1000:]]
        return float((top @ top.T).mean()), float((rest @ rest.T).mean())

    top_without, rest_without = top_similarity(0.0)
    top_with, rest_with = top_similarity(3.0)
    assert top_with > top_without + 0.2  # popular tracks share a direction...
    assert rest_with == pytest.approx(rest_without, abs=0.02)  # ...the unpopular hardly


def test_embeddings_share_one_norm_the_configured_scale() -> None:
    w = small_world()
    norms = np.linalg.norm(w.embeddings, axis=1)
    assert norms == pytest.approx(small_config().world.scale, rel=1e-5)


def test_nearest_rows_is_exact_and_best_first() -> None:
    w = small_world()
    queries = w.interests[:20]
    got = nearest_rows(w.embeddings, queries, 10)
    scores = w.embeddings[queries.reshape(-1)] @ w.embeddings.T
    want = np.argsort(-scores, axis=1, kind="stable")[:, :10].reshape(20, -1, 10)
    assert np.array_equal(got, want)
    # Every track is its own nearest (all embeddings have the same norm).
    assert np.array_equal(got[..., 0], queries)


def test_start_candidates_are_each_interests_nearest_tracks() -> None:
    w = small_world()
    assert np.array_equal(w.start_candidates, nearest_rows(w.embeddings, w.interests, 10))


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    w = small_world()
    save_world(w, tmp_path)
    assert_same_world(w, load_world(tmp_path))
    # The public part is a plain botify catalog, with nothing hidden in it.
    assert load_catalog(tmp_path / "catalog.jsonl").tracks == w.catalog.tracks
    first = json.loads((tmp_path / "catalog.jsonl").read_text().splitlines()[0])
    assert set(first) == {"track", "artist", "title", "genre"}
    # The hidden part: plain .npy arrays in an .npz, no object arrays, under hidden/.
    with zipfile.ZipFile(tmp_path / HIDDEN_DIR / HIDDEN_FILE) as z:
        assert sorted(z.namelist()) == sorted(f"{n}.npy" for n in ARRAYS)
    with np.load(tmp_path / HIDDEN_DIR / HIDDEN_FILE, allow_pickle=False) as z:
        assert all(z[n].dtype != object for n in z.files)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["tracks"] == 3000 and manifest["users"] == 300
    assert manifest["config"]["scale"] == small_config().world.scale


def test_world_on_an_existing_catalog_follows_its_artists_and_genres(tmp_path: Path) -> None:
    catalog = generate_catalog(2000, 150, seed=1)
    write_catalog(catalog, tmp_path / "c.jsonl")
    w = world_from_catalog(load_catalog(tmp_path / "c.jsonl"), small_config(users=100))
    assert w.catalog.tracks == catalog.tracks
    assert w.embeddings.shape[0] == 2000 and w.users == 100
    # Artist index 0 is the catalog's biggest artist.
    biggest = max(catalog.artist_tracks, key=lambda a: len(catalog.artist_tracks[a]))
    assert catalog.tracks[int(np.flatnonzero(w.artist_index == 0)[0])].artist == biggest
    genre = np.array([t.genre for t in catalog])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2000, (2, 20_000))
    sim = cosine(w.embeddings[a], w.embeddings[b])
    other_artist = w.artist_index[a] != w.artist_index[b]
    same_genre = genre[a] == genre[b]
    assert sim[other_artist & same_genre].mean() > sim[~same_genre].mean() + 0.2
    assert sim[~other_artist & (a != b)].mean() > sim[other_artist & same_genre].mean() + 0.05


def test_world_on_a_catalog_without_genres_and_with_sparse_ids() -> None:
    base = generate_catalog(500, 40, seed=2)
    catalog = Catalog(tuple(Track(10 * t.track + 7, t.artist, t.title) for t in base))
    w = world_from_catalog(catalog, small_config(users=50))
    assert w.row_of[7] == 0 and w.track_ids[1] == 17
    assert w.config.tracks == 500 and w.config.artists == 40
    assert w.start_candidates.max() < 500
