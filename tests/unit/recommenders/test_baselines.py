from __future__ import annotations

from collections import Counter

from botify.recommenders import RecommenderContext, RecommendRequest, build_recommender
from botify.state import UserState
from tests.factories import small_catalog

CATALOG = small_catalog(300, 25)


def test_sticky_artist_stays_with_the_artist_until_exhausted() -> None:
    rec = build_recommender("sticky_artist", RecommenderContext(CATALOG))
    artist = CATALOG.artist_of(7)
    mates = set(CATALOG.tracks_by_artist(artist))
    played, track = {7}, 7
    for _ in range(len(mates) - 1):
        track = rec.recommend(
            RecommendRequest(1, track, 1.0, frozenset(played)), UserState(1)
        ).track
        assert track in mates
        played.add(track)
    # Artist exhausted: falls back to another artist rather than repeating.
    nxt = rec.recommend(RecommendRequest(1, track, 1.0, frozenset(played)), UserState(1)).track
    assert nxt not in mates


def test_top_pop_serves_only_the_top_k() -> None:
    ctx = RecommenderContext(CATALOG)
    ctx.popularity.top = tuple(range(100, 200))
    rec = build_recommender("top_pop", ctx, {"top_pop_k": 10})
    picks = {
        rec.recommend(RecommendRequest(u, 1, 1.0, frozenset({1})), UserState(u)).track
        for u in range(300)
    }
    assert picks == set(range(100, 110))


def test_top_pop_without_popularity_falls_back_to_the_catalog() -> None:
    rec = build_recommender("top_pop", RecommenderContext(CATALOG))
    assert rec.recommend(RecommendRequest(1, 1, 1.0, frozenset({1})), UserState(1)).track in CATALOG


def test_random_is_roughly_uniform() -> None:
    rec = build_recommender("random", RecommenderContext(CATALOG))
    counts = Counter(
        rec.recommend(RecommendRequest(u, 1, 1.0, frozenset({1})), UserState(u)).track
        for u in range(30_000)
    )
    assert len(counts) == 299
    assert max(counts.values()) < 3 * 30_000 / 299
