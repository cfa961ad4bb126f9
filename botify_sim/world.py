"""The music world: a public catalog plus hidden track embeddings and users.

Tracks of one genre share a direction, tracks of one artist share another on top of it, so
they lie close together. Users hold three interest tracks drawn by popularity, a consume
bias and a consume sharpness (reference.md §3). Everything is drawn from one seeded
generator: the same seed and config give the same world, byte for byte.

On disk: ``<dir>/catalog.jsonl`` is public (the platform loads it); ``<dir>/hidden/`` holds
the embeddings and users (.npy inside an .npz, never pickled) that only the simulator reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from botify.catalog import Catalog, Track, load_catalog, write_catalog
from botify_sim.config import SimConfig, WorldConfig

HIDDEN_DIR = "hidden"
HIDDEN_FILE = "world.npz"
GENRE_NAMES = (
    "rock",
    "pop",
    "jazz",
    "electronic",
    "hip-hop",
    "classical",
    "folk",
    "metal",
    "blues",
    "reggae",
    "country",
    "soul",
    "funk",
    "punk",
    "ambient",
    "latin",
    "r&b",
    "indie",
    "techno",
    "house",
    "disco",
    "gospel",
    "k-pop",
    "soundtrack",
)


@dataclass(frozen=True)
class World:
    """Row i of every array describes ``catalog.tracks[i]``."""

    catalog: Catalog
    embeddings: np.ndarray  # (tracks, dim) float32
    artist_index: np.ndarray  # (tracks,) int32
    popularity: np.ndarray  # (tracks,) float64, sums to 1
    interests: np.ndarray  # (users, interests) int64 rows
    bias: np.ndarray  # (users,) float64
    sharpness: np.ndarray  # (users,) float64
    # Rows of each interest's nearest tracks by inner product: where sessions start.
    start_candidates: np.ndarray  # (users, interests, nearest) int64
    config: WorldConfig
    seed: int
    track_ids: np.ndarray = field(init=False, repr=False)
    row_of: dict[int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = self.catalog.ids
        object.__setattr__(self, "track_ids", ids)
        object.__setattr__(self, "row_of", {int(t): i for i, t in enumerate(ids)})

    @property
    def users(self) -> int:
        return len(self.bias)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _embed(
    rng: np.random.Generator, cfg: WorldConfig, artist_of: np.ndarray, genre_of_artist: np.ndarray
) -> np.ndarray:
    n_artists = len(genre_of_artist)
    genres = _unit(rng.standard_normal((cfg.genres, cfg.dim)))
    artists = _unit(rng.standard_normal((n_artists, cfg.dim)))
    noise = _unit(rng.standard_normal((len(artist_of), cfg.dim)))
    mix = (
        cfg.genre_weight * genres[genre_of_artist[artist_of]]
        + cfg.artist_weight * artists[artist_of]
        + cfg.noise_weight * noise
    )
    return (cfg.scale * _unit(mix)).astype(np.float32)


def _users(
    rng: np.random.Generator, config: SimConfig, popularity: np.ndarray
) -> tuple[np.ndarray, ...]:
    w, u = config.world, config.user
    # Draw by popularity with replacement, then keep each user's first distinct picks; the
    # rare user left short draws again. (One choice() per user would take seconds.)
    draws = rng.choice(len(popularity), size=(w.users, 4 * w.interests), p=popularity)
    interests = np.empty((w.users, w.interests), dtype=np.int64)
    for i, row in enumerate(draws):
        picked = list(dict.fromkeys(row.tolist()))[: w.interests]
        while len(picked) < w.interests:
            extra = int(rng.choice(len(popularity), p=popularity))
            if extra not in picked:
                picked.append(extra)
        interests[i] = picked
    bias = rng.uniform(u.bias_low, u.bias_high, w.users)
    base = rng.uniform(u.sharpness_low, u.sharpness_high, w.users)
    sharpness = np.where(rng.random(w.users) < 0.5, base, 1.0 / base)
    return interests, bias, sharpness


def _start_candidates(embeddings: np.ndarray, interests: np.ndarray, k: int) -> np.ndarray:
    """For every interest, the rows of its k nearest tracks (one matrix product per chunk)."""
    flat = interests.reshape(-1)
    out = np.empty((len(flat), k), dtype=np.int64)
    for lo in range(0, len(flat), 1024):
        scores = embeddings[flat[lo : lo + 1024]] @ embeddings.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[lo : lo + 1024] = np.take_along_axis(top, order, axis=1)
    return out.reshape(*interests.shape, k)


def _popularity(rng: np.random.Generator, cfg: WorldConfig, artist_rank: np.ndarray) -> np.ndarray:
    # Popular artists have popular tracks; within an artist, a lognormal spread.
    weight = (1.0 + artist_rank) ** -cfg.popularity_exponent * rng.lognormal(
        0.0, 1.0, len(artist_rank)
    )
    return weight / weight.sum()


def generate_world(config: SimConfig) -> World:
    """A fresh world from the config's seed and sizes."""
    cfg = config.world
    if not 1 <= cfg.artists <= cfg.tracks:
        raise ValueError("need 1 <= artists <= tracks")
    rng = np.random.default_rng(config.seed)
    sizes_w = 1.0 / np.arange(1, cfg.artists + 1) ** cfg.artist_size_exponent
    extra = rng.choice(cfg.artists, size=cfg.tracks - cfg.artists, p=sizes_w / sizes_w.sum())
    artist_of = rng.permutation(np.concatenate([np.arange(cfg.artists), extra])).astype(np.int32)
    genre_of_artist = rng.integers(0, cfg.genres, cfg.artists)
    embeddings = _embed(rng, cfg, artist_of, genre_of_artist)
    # Artist index doubles as popularity rank: artist 0 is the biggest and most popular.
    popularity = _popularity(rng, cfg, artist_of)
    catalog = Catalog(
        tuple(
            Track(
                i, f"Artist {a}", f"Track {i}", GENRE_NAMES[genre_of_artist[a] % len(GENRE_NAMES)]
            )
            for i, a in enumerate(artist_of.tolist())
        )
    )
    interests, bias, sharpness = _users(rng, config, popularity)
    starts = _start_candidates(embeddings, interests, config.user.nearest)
    return World(
        catalog,
        embeddings,
        artist_of,
        popularity,
        interests,
        bias,
        sharpness,
        starts,
        cfg,
        config.seed,
    )


def world_from_catalog(catalog: Catalog, config: SimConfig) -> World:
    """A world on an existing botify catalog: embeddings synthesised from its artists (and
    genres when present), popularity from artist size, users as usual."""
    cfg = config.world
    rng = np.random.default_rng(config.seed)
    artists = sorted(catalog.artist_tracks, key=lambda a: (-len(catalog.artist_tracks[a]), a))
    rank = {a: i for i, a in enumerate(artists)}
    artist_of = np.array([rank[t.artist] for t in catalog.tracks], dtype=np.int32)
    genre_names = sorted({t.genre for t in catalog.tracks if t.genre})
    genre_id = {g: i for i, g in enumerate(genre_names)}
    n_genres = max(len(genre_names), cfg.genres)
    genre_of_artist = rng.integers(0, n_genres, len(artists))
    for t in catalog.tracks:
        if t.genre:
            genre_of_artist[rank[t.artist]] = genre_id[t.genre]
    cfg = cfg.model_copy(
        update={"genres": n_genres, "tracks": len(catalog), "artists": len(artists)}
    )
    embeddings = _embed(rng, cfg, artist_of, genre_of_artist)
    popularity = _popularity(rng, cfg, artist_of)
    interests, bias, sharpness = _users(rng, config.model_copy(update={"world": cfg}), popularity)
    starts = _start_candidates(embeddings, interests, config.user.nearest)
    return World(
        catalog,
        embeddings,
        artist_of,
        popularity,
        interests,
        bias,
        sharpness,
        starts,
        cfg,
        config.seed,
    )


def save_world(world: World, directory: Path | str) -> Path:
    directory = Path(directory)
    (directory / HIDDEN_DIR).mkdir(parents=True, exist_ok=True)
    write_catalog(world.catalog, directory / "catalog.jsonl")
    np.savez(
        directory / HIDDEN_DIR / HIDDEN_FILE,
        embeddings=world.embeddings,
        artist_index=world.artist_index,
        popularity=world.popularity,
        interests=world.interests,
        bias=world.bias,
        sharpness=world.sharpness,
        start_candidates=world.start_candidates,
    )
    manifest = {
        "seed": world.seed,
        "config": world.config.model_dump(),
        "tracks": len(world.catalog),
        "users": world.users,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return directory


def load_world(directory: Path | str) -> World:
    directory = Path(directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    with np.load(directory / HIDDEN_DIR / HIDDEN_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return World(
        load_catalog(directory / "catalog.jsonl"),
        arrays["embeddings"],
        arrays["artist_index"],
        arrays["popularity"],
        arrays["interests"],
        arrays["bias"],
        arrays["sharpness"],
        arrays["start_candidates"],
        WorldConfig.model_validate(manifest["config"]),
        manifest["seed"],
    )
