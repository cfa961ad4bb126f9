"""Every registered recommender honours the contract (like RecBole's test_model_auto)."""

from __future__ import annotations

import time

import pytest

from botify.recommenders import REGISTRY, RecommenderContext, RecommendRequest, build_recommender
from botify.state import UserState
from tests.factories import small_catalog

CATALOG = small_catalog(300, 25)


def context() -> RecommenderContext:
    ctx = RecommenderContext(CATALOG, seed=3)
    ctx.popularity.top = tuple(range(0, 300, 3))
    return ctx


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_returns_catalog_tracks_never_played_this_session(name: str) -> None:
    rec = build_recommender(name, context())
    played: set[int] = {7}
    track = 7
    for _ in range(250):
        nxt = rec.recommend(RecommendRequest(1, track, 0.8, frozenset(played)), UserState(1))
        assert nxt in CATALOG
        assert nxt not in played
        played.add(nxt)
        track = nxt


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_exhausted_catalog_still_answers_a_catalog_track(name: str) -> None:
    rec = build_recommender(name, context())
    everything = frozenset(int(t) for t in CATALOG.ids)
    assert rec.recommend(RecommendRequest(1, 7, 0.8, everything), UserState(1)) in CATALOG


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_same_seed_same_answer_other_seed_other_answers(name: str) -> None:
    a, b = build_recommender(name, context()), build_recommender(name, context())
    other = build_recommender(
        name, RecommenderContext(CATALOG, seed=4, popularity=context().popularity)
    )
    reqs = [RecommendRequest(u, 7, 0.5, frozenset({7})) for u in range(50)]
    answers = [a.recommend(r, UserState(r.user)) for r in reqs]
    assert answers == [b.recommend(r, UserState(r.user)) for r in reqs]
    assert answers != [other.recommend(r, UserState(r.user)) for r in reqs]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_latency_budget(name: str) -> None:
    rec = build_recommender(name, context())
    req = RecommendRequest(1, 7, 0.5, frozenset(range(0, 300, 2)))
    started = time.perf_counter()
    for _ in range(1000):
        rec.recommend(req, UserState(1))
    # 1 ms per call is an order of magnitude above what they need; this catches O(catalog)
    # work sneaking into the hot path, not noise.
    assert (time.perf_counter() - started) / 1000 < 1e-3


def test_unknown_recommender_names_the_known_ones() -> None:
    with pytest.raises(Exception, match="known: random"):
        build_recommender("nope", context())
