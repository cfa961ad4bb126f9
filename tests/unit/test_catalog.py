from __future__ import annotations

from pathlib import Path

import pytest

from botify.catalog import generate_catalog, load_catalog, write_catalog
from botify.errors import CatalogError, UnknownTrackError
from botify.settings import CatalogSettings


def test_round_trip_preserves_every_field(tmp_path: Path) -> None:
    cat = generate_catalog(50, 5, seed=1)
    write_catalog(cat, tmp_path / "c.jsonl")
    assert load_catalog(tmp_path / "c.jsonl").tracks == cat.tracks


def test_generation_is_deterministic_and_skewed() -> None:
    a, b = generate_catalog(2000, 100, seed=3), generate_catalog(2000, 100, seed=3)
    assert a.tracks == b.tracks
    sizes = sorted((len(v) for v in a.artist_tracks.values()), reverse=True)
    assert len(sizes) == 100 and sizes[0] > 5 * sizes[-1]


def test_botify_format_without_genre_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"track": 0, "artist": "A", "title": "x"}\n\n{"track": 5, "artist": "A", "title": "y"}\n'
    )
    cat = load_catalog(path)
    assert cat.tracks_by_artist("A") == (0, 5) and cat.get(5).genre is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{nope", "not JSON"),
        ('{"track": "1", "artist": "A", "title": "x"}', "'track'"),
        ('{"track": -1, "artist": "A", "title": "x"}', "'track'"),
        ('{"track": 1, "title": "x"}', "'artist'"),
        ('{"track": 1, "artist": "A", "title": 3}', "'title'"),
        ("[1, 2]", "object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"track": 0, "artist": "A", "title": "x"}\n' + line + "\n")
    with pytest.raises(CatalogError, match=message) as info:
        load_catalog(path)
    assert "c.jsonl:2" in str(info.value)


def test_duplicate_and_missing_tracks(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"track": 0, "artist": "A", "title": "x"}\n' * 2)
    with pytest.raises(CatalogError, match="twice"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.jsonl")
    with pytest.raises(UnknownTrackError):
        generate_catalog(5, 1).get(99)


def test_shipped_sample_catalog_loads() -> None:
    cat = load_catalog(CatalogSettings().path)
    assert len(cat) == 2000
