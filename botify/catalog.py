"""The public track catalog: id, artist, title and optional genre.

Loaded from botify's JSON-lines format, one ``{"track", "artist", "title"[, "genre"]}`` per
line. Indexes are built once at load so recommenders can look up an artist's tracks in O(1).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from botify.errors import CatalogError, UnknownTrackError

MAX_TRACK_ID = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Track:
    track: int
    artist: str
    title: str
    genre: str | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"track": self.track, "artist": self.artist, "title": self.title}
        if self.genre is not None:
            out["genre"] = self.genre
        return out


@dataclass(frozen=True)
class Catalog:
    """An immutable catalog with the indexes recommenders need."""

    tracks: tuple[Track, ...]
    by_id: dict[int, Track] = field(init=False, repr=False)
    ids: np.ndarray = field(init=False, repr=False)
    artist_tracks: dict[str, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.tracks:
            raise CatalogError("the catalog is empty")
        by_id: dict[int, Track] = {}
        artists: dict[str, list[int]] = {}
        for t in self.tracks:
            if t.track in by_id:
                raise CatalogError(f"track {t.track} appears twice in the catalog")
            by_id[t.track] = t
            artists.setdefault(t.artist, []).append(t.track)
        object.__setattr__(self, "by_id", by_id)
        object.__setattr__(self, "ids", np.fromiter((t.track for t in self.tracks), np.int64))
        object.__setattr__(self, "artist_tracks", {a: tuple(ts) for a, ts in artists.items()})

    def __len__(self) -> int:
        return len(self.tracks)

    def __contains__(self, track: object) -> bool:
        return track in self.by_id

    def get(self, track: int) -> Track:
        try:
            return self.by_id[track]
        except KeyError:
            raise UnknownTrackError(track) from None

    def artist_of(self, track: int) -> str:
        return self.get(track).artist

    def tracks_by_artist(self, artist: str) -> tuple[int, ...]:
        return self.artist_tracks.get(artist, ())

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks)


def unknown_track(track: int, recommendation: int | None, known: Container[int]) -> str | None:
    """Why an event naming ``track`` (and ``recommendation``) does not fit the catalog whose
    ids are ``known``, or None when it does: a set lookup or two, for the stream's hot path."""
    if track not in known:
        return f"unknown track {track}: not in the catalog"
    if recommendation is not None and recommendation not in known:
        return f"unknown recommendation {recommendation}: not in the catalog"
    return None


def parse_catalog_lines(lines: Iterable[bytes | str], source: str = "<catalog>") -> Catalog:
    tracks = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CatalogError(f"{source}:{lineno}: not JSON ({exc})") from None
        tracks.append(_parse_row(row, f"{source}:{lineno}"))
    return Catalog(tuple(tracks))


def _parse_row(row: object, where: str) -> Track:
    if not isinstance(row, dict):
        raise CatalogError(f"{where}: expected an object")
    track = row.get("track")
    if not isinstance(track, int) or isinstance(track, bool) or not 0 <= track <= MAX_TRACK_ID:
        raise CatalogError(f"{where}: 'track' must be an integer id in [0, {MAX_TRACK_ID}]")
    artist, title, genre = row.get("artist"), row.get("title"), row.get("genre")
    if not isinstance(artist, str) or not artist:
        raise CatalogError(f"{where}: 'artist' must be a non-empty string")
    if not isinstance(title, str):
        raise CatalogError(f"{where}: 'title' must be a string")
    if genre is not None and not isinstance(genre, str):
        raise CatalogError(f"{where}: 'genre' must be a string when present")
    return Track(track, artist, title, genre)


def load_catalog(path: Path | str) -> Catalog:
    """Load a JSON-lines catalog; ``CatalogError`` names the file and line of a bad row."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return parse_catalog_lines(fh, str(path))
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror}") from None


def write_catalog(catalog: Iterable[Track], path: Path | str) -> None:
    with Path(path).open("wb") as fh:
        for t in catalog:
            fh.write(orjson.dumps(t.to_json()) + b"\n")


GENRES = ("rock", "pop", "jazz", "electronic", "hip-hop", "classical", "folk", "metal")


def generate_catalog(n_tracks: int, n_artists: int, seed: int = 0) -> Catalog:
    """A deterministic toy catalog with Zipf-like artist sizes (for tests and the sample file)."""
    if n_tracks < 1 or not 1 <= n_artists <= n_tracks:
        raise CatalogError("need 1 <= n_artists <= n_tracks")
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_artists + 1) ** 0.8
    # Every artist gets one track; the rest follow the skewed weights.
    extra = rng.choice(n_artists, size=n_tracks - n_artists, p=weights / weights.sum())
    artist_of = np.concatenate([np.arange(n_artists), extra])
    artist_of = artist_of[rng.permutation(n_tracks)]
    artist_genre = rng.integers(0, len(GENRES), size=n_artists)
    return Catalog(
        tuple(
            Track(i, f"Artist {a}", f"Track {i}", GENRES[artist_genre[a]])
            for i, a in enumerate(int(x) for x in artist_of)
        )
    )
