"""The music world: a public catalog plus hidden track embeddings and users.

Tracks of one genre share a direction, tracks of one artist share another on top of it, so
they lie close together. Users hold three interest tracks drawn by popularity, a consume
bias and a consume sharpness (reference.md §3). Everything is drawn from one seeded
generator: the same seed and config give the same world, byte for byte.

On disk: ``<dir>/catalog.jsonl`` is public (the platform loads it); ``<dir>/hidden/`` holds
the embeddings, popularity and users (.npy arrays inside one .npz, never pickled) that only
the simulator reads; ``<dir>/manifest.json`` records the seed, sizes and parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from botify.catalog import Catalog, Track, load_catalog, write_catalog
from botify_sim.config import SimConfig, WorldConfig

CATALOG_FILE = "catalog.jsonl"
MANIFEST_FILE = "manifest.json"
HIDDEN_DIR = "hidden"
HIDDEN_FILE = "world.npz"
FORMAT_VERSION = 1
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
# Queries per matrix product when looking for nearest tracks: 256 x 50,000 float32 scores
# (51 MB) was the fastest block here; bigger blocks fall out of cache.
_NEAREST_BLOCK = 256


@dataclass(frozen=True)
class World:
    """Row i of every per-track array describes ``catalog.tracks[i]``."""

    catalog: Catalog
    embeddings: np.ndarray  # (tracks, dim) float32
    artist_index: np.ndarray  # (tracks,) int32; 0 is the biggest, most popular artist
    popularity: np.ndarray  # (tracks,) float64, sums to 1
    interests: np.ndarray  # (users, interests) int64 rows
    bias: np.ndarray  # (users,) float64
    sharpness: np.ndarray  # (users,) float64
    # Rows of each interest's nearest tracks by inner product, best first: where sessions start.
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

    def top_tracks(self, k: int) -> tuple[int, ...]:
        """The k most popular track ids (hidden popularity), most popular first."""
        rows = np.argsort(-self.popularity, kind="stable")[:k]
        return tuple(int(t) for t in self.track_ids[rows])


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return unit


def _mix(
    rng: np.random.Generator, cfg: WorldConfig, artist_of: np.ndarray, genre_of_artist: np.ndarray
) -> np.ndarray:
    """Each track's genre centre + artist offset + track noise, weighted per the config."""
    genres = _unit(rng.standard_normal((cfg.genres, cfg.dim)))
    artists = _unit(rng.standard_normal((len(genre_of_artist), cfg.dim)))
    noise = _unit(rng.standard_normal((len(artist_of), cfg.dim)))
    mixed: np.ndarray = (
        cfg.genre_weight * genres[genre_of_artist[artist_of]]
        + cfg.artist_weight * artists[artist_of]
        + cfg.noise_weight * noise
    )
    return mixed


def _percentile(popularity: np.ndarray) -> np.ndarray:
    """Each track's popularity rank as a fraction: 0 for the least popular, 1 for the most."""
    rank = np.empty(len(popularity))
    rank[np.argsort(popularity, kind="stable")] = np.arange(len(popularity))
    fraction: np.ndarray = rank / max(len(popularity) - 1, 1)
    return fraction


def _mainstream(rng: np.random.Generator, cfg: WorldConfig, popularity: np.ndarray) -> np.ndarray:
    """One direction that every track shares in proportion to its popularity percentile
    to the power ``mainstream_power``: popular tracks are then liked more broadly, as
    popular tracks were in the course's MSD factors, and lie nearer each other."""
    direction = _unit(rng.standard_normal(cfg.dim))
    weight = cfg.mainstream_weight * _percentile(popularity) ** cfg.mainstream_power
    shared: np.ndarray = weight[:, None] * direction
    return shared


def _popularity(rng: np.random.Generator, cfg: WorldConfig, artist_rank: np.ndarray) -> np.ndarray:
    # Popular artists have popular tracks; within an artist, a lognormal spread.
    weight = (1.0 + artist_rank) ** -cfg.popularity_exponent * rng.lognormal(
        0.0, 1.0, len(artist_rank)
    )
    shares: np.ndarray = weight / weight.sum()
    return shares


def _users(
    rng: np.random.Generator, config: SimConfig, popularity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, u = config.world, config.user
    if w.interests > len(popularity):
        raise ValueError("need at least as many tracks as interests per user")
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
    sharpness = np.where(rng.random(w.users) < 0.5, base, 1.0 / base)  # U(low, high)^(±1)
    return interests, bias, sharpness


def nearest_rows(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """For each query row, the rows of its k nearest tracks by inner product, best first.

    Exact: each distinct query is scored against every track in one matrix product per
    block; ``partition`` finds the k-th best score, and ties sort by row so the answer
    never depends on the partition's internal order."""
    k = min(k, len(embeddings))
    unique, inverse = np.unique(queries, return_inverse=True)
    out = np.empty((len(unique), k), dtype=np.int64)
    for lo in range(0, len(unique), _NEAREST_BLOCK):
        scores = embeddings[unique[lo : lo + _NEAREST_BLOCK]] @ embeddings.T
        kth = np.partition(scores, -k, axis=1)[:, -k]
        for i, (row, threshold) in enumerate(zip(scores, kth, strict=True)):
            candidates = np.flatnonzero(row >= threshold)
            order = np.lexsort((candidates, -row[candidates]))
            out[lo + i] = candidates[order[:k]]
    return out[inverse.reshape(-1)].reshape(*queries.shape, k)


def _populate(
    rng: np.random.Generator,
    config: SimConfig,
    catalog: Catalog,
    artist_of: np.ndarray,
    genre_of_artist: np.ndarray,
) -> World:
    """The hidden parts of a world on a catalog whose artists and genres are decided."""
    cfg = config.world
    mix = _mix(rng, cfg, artist_of, genre_of_artist)
    popularity = _popularity(rng, cfg, artist_of)
    if cfg.mainstream_weight:  # drawn only when used: a world without it stays as it was
        mix = mix + _mainstream(rng, cfg, popularity)
    # scale * unit(genre + artist + noise + mainstream): every embedding has the norm scale.
    embeddings = (cfg.scale * _unit(mix)).astype(np.float32)
    interests, bias, sharpness = _users(rng, config, popularity)
    starts = nearest_rows(embeddings, interests, config.user.nearest)
    return World(
        catalog=catalog,
        embeddings=embeddings,
        artist_index=artist_of,
        popularity=popularity,
        interests=interests,
        bias=bias,
        sharpness=sharpness,
        start_candidates=starts,
        config=cfg,
        seed=config.seed,
    )


def generate_world(config: SimConfig) -> World:
    """A fresh world from the config's seed and sizes (about 3 s for 50,000 tracks)."""
    cfg = config.world
    if not 1 <= cfg.artists <= cfg.tracks:
        raise ValueError("need 1 <= artists <= tracks")
    rng = np.random.default_rng(config.seed)
    # Every artist gets one track; the rest go by Zipf-like weights. Artist index doubles as
    # popularity rank: artist 0 is the biggest and the most popular.
    sizes = 1.0 / np.arange(1, cfg.artists + 1) ** cfg.artist_size_exponent
    extra = rng.choice(cfg.artists, size=cfg.tracks - cfg.artists, p=sizes / sizes.sum())
    artist_of = rng.permutation(np.concatenate([np.arange(cfg.artists), extra])).astype(np.int32)
    genre_of_artist = rng.integers(0, cfg.genres, cfg.artists)
    catalog = Catalog(
        tuple(
            Track(
                i, f"Artist {a}", f"Track {i}", GENRE_NAMES[genre_of_artist[a] % len(GENRE_NAMES)]
            )
            for i, a in enumerate(artist_of.tolist())
        )
    )
    return _populate(rng, config, catalog, artist_of, genre_of_artist)


def world_from_catalog(catalog: Catalog, config: SimConfig) -> World:
    """A world on an existing botify catalog: embeddings synthesised from its artists (and
    genres when present), popularity from artist size, users as usual."""
    rng = np.random.default_rng(config.seed)
    artists = sorted(catalog.artist_tracks, key=lambda a: (-len(catalog.artist_tracks[a]), a))
    rank = {a: i for i, a in enumerate(artists)}
    artist_of = np.array([rank[t.artist] for t in catalog.tracks], dtype=np.int32)
    genre_names = sorted({t.genre for t in catalog.tracks if t.genre})
    genre_id = {g: i for i, g in enumerate(genre_names)}
    n_genres = max(len(genre_names), config.world.genres)
    # An artist without a genre in the catalog gets a random one (maybe one of its own).
    genre_of_artist = rng.integers(0, n_genres, len(artists))
    for t in catalog.tracks:
        if t.genre:
            genre_of_artist[rank[t.artist]] = genre_id[t.genre]
    cfg = config.world.model_copy(
        update={"genres": n_genres, "tracks": len(catalog), "artists": len(artists)}
    )
    return _populate(
        rng, config.model_copy(update={"world": cfg}), catalog, artist_of, genre_of_artist
    )


def save_world(world: World, directory: Path | str) -> Path:
    """Write the public catalog, the hidden arrays and the manifest under ``directory``."""
    directory = Path(directory)
    (directory / HIDDEN_DIR).mkdir(parents=True, exist_ok=True)
    write_catalog(world.catalog, directory / CATALOG_FILE)
    arrays = {
        "embeddings": world.embeddings,
        "artist_index": world.artist_index,
        "popularity": world.popularity,
        "interests": world.interests,
        "bias": world.bias,
        "sharpness": world.sharpness,
        "start_candidates": world.start_candidates,
    }
    np.savez(directory / HIDDEN_DIR / HIDDEN_FILE, allow_pickle=False, **arrays)
    manifest = {
        "format": FORMAT_VERSION,
        "seed": world.seed,
        "tracks": len(world.catalog),
        "artists": len(world.catalog.artist_tracks),
        "users": world.users,
        "config": world.config.model_dump(),
        "hidden": {
            "file": f"{HIDDEN_DIR}/{HIDDEN_FILE}",
            "arrays": {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()},
        },
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


def load_world(directory: Path | str) -> World:
    """Read a world written by ``save_world`` (arrays only: no pickle is ever loaded)."""
    directory = Path(directory)
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    if manifest.get("format", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"{directory}: unknown world format {manifest['format']!r}")
    with np.load(directory / HIDDEN_DIR / HIDDEN_FILE, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return World(
        catalog=load_catalog(directory / CATALOG_FILE),
        config=WorldConfig.model_validate(manifest["config"]),
        seed=int(manifest["seed"]),
        **arrays,
    )
