"""Serving policies over plain candidate lists: no model, no catalog scan."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection

import numpy as np
import pytest

from botify.catalog import Catalog, Track
from botify.errors import ConfigError
from botify.recommenders.base import RecommendRequest
from botify.recommenders.policies import (
    CandidateSource,
    Ranked,
    artist_diverse,
    fail_cascade,
    first_unplayed,
    relevance_order,
    top_k_random,
)
from botify.state import UserState


def fixed(tracks: list[int], version: int | None = 1) -> CandidateSource:
    return lambda request, state: Ranked(tracks, version)


def empty(request: RecommendRequest, state: UserState) -> Ranked | None:
    return None


def must_not_be_called(request: RecommendRequest, state: UserState) -> Ranked | None:
    raise AssertionError("a later source was read although an earlier one answered")


def req(
    played: Collection[int] = (),
    track: int = 0,
    time: float = 1.0,
    session: tuple[int, ...] = (),
) -> RecommendRequest:
    return RecommendRequest(1, track, time, frozenset(played) | {track}, session)


def rng(i: int = 0) -> random.Random:
    return random.Random(i)


# top_k_random


def test_top_k_random_picks_only_among_the_first_k_unplayed() -> None:
    ranked = list(range(100, 200))
    played = {100, 102, 104}
    picks = Counter(
        top_k_random(5).choose([fixed(ranked)], req(played), UserState(1), rng(i))
        for i in range(2000)
    )
    # The played ones are skipped, so the window extends past the fifth candidate.
    assert {p for p, _ in picks} == {101, 103, 105, 106, 107}
    assert min(picks.values()) > 2000 / 5 * 0.7


def test_top_k_random_never_serves_a_played_track_and_falls_through_when_all_are() -> None:
    policy = top_k_random(3)
    played = {10, 11, 12}
    pick = policy.choose([fixed([10, 11, 12], 1), fixed([13], 2)], req(played), UserState(1), rng())
    assert pick == (13, 2)
    assert policy.choose([fixed([10, 11, 12])], req(played), UserState(1), rng()) is None


def test_top_k_random_reads_later_sources_only_when_needed() -> None:
    policy = top_k_random(3)
    assert policy.choose([fixed([5]), must_not_be_called], req(), UserState(1), rng())[0] == 5


def test_top_k_random_returns_plain_ints_from_numpy_candidates() -> None:
    pick = top_k_random(2).choose(
        [fixed(np.array([7, 8], dtype=np.int64))], req(), UserState(1), rng()
    )
    assert pick is not None and type(pick[0]) is int


def test_top_k_random_rejects_a_non_positive_k() -> None:
    with pytest.raises(ConfigError, match="k must be at least 1"):
        top_k_random(0)


# relevance_order


def test_relevance_order_serves_the_best_unplayed_candidate() -> None:
    policy = relevance_order()
    assert policy.choose([fixed([4, 5, 6], 3)], req({4}), UserState(1), rng()) == (5, 3)


def test_relevance_order_falls_through_empty_and_exhausted_sources() -> None:
    policy = relevance_order()
    sources = [empty, fixed([4]), fixed([4, 9], 7)]
    assert policy.choose(sources, req({4}), UserState(1), rng()) == (9, 7)
    assert policy.choose([empty, fixed([4])], req({4}), UserState(1), rng()) is None


def test_first_unplayed_stops_after_n() -> None:
    assert first_unplayed([1, 2, 3, 4, 5], frozenset({2}), 3) == [1, 3, 4]
    assert first_unplayed([1, 2], frozenset(), 0) == []


# artist_diverse

# Tracks 0-9 by artist A, 10-19 by B, 20-29 by C.
CATALOG = Catalog(tuple(Track(i, "ABC"[i // 10], f"t{i}") for i in range(30)))


def test_artist_diverse_skips_an_artist_played_max_times_this_session() -> None:
    policy = artist_diverse(2, CATALOG)
    # The session played two tracks by A and one by B: A is blocked, B is not.
    session = (0, 1, 10)
    request = req(set(session), track=10, session=session)
    assert policy.choose([fixed([2, 3, 11, 20])], request, UserState(1), rng()) == (11, 1)


def test_artist_diverse_keeps_relevance_order_below_the_cap() -> None:
    policy = artist_diverse(2, CATALOG)
    request = req({0}, track=0, session=(0,))
    assert policy.choose([fixed([2, 11])], request, UserState(1), rng()) == (2, 1)


def test_artist_diverse_falls_back_to_relevance_order_when_every_candidate_is_blocked() -> None:
    policy = artist_diverse(1, CATALOG)
    session = (0, 10)
    request = req(set(session), track=10, session=session)
    assert policy.choose([fixed([0, 3, 12])], request, UserState(1), rng()) == (3, 1)


def test_artist_diverse_counts_the_played_set_without_a_session_order() -> None:
    policy = artist_diverse(1, CATALOG)
    assert policy.choose([fixed([1, 21])], req({0}), UserState(1), rng()) == (21, 1)


# fail_cascade

SOURCES = [fixed([100, 101], 1), fixed([200, 201], 2), fixed([300, 301], 3)]


def lagging(fail_count: int, last_track: int = 999) -> UserState:
    """A state that has not seen the request's listen yet."""
    return UserState(1, history=(last_track,), history_times=(0.1,), fail_count=fail_count)


@pytest.mark.parametrize(
    ("fails_before", "time", "source"),
    [
        (0, 0.9, 1),  # a success: the first source
        (5, 0.9, 1),  # a success resets the run, however long it was
        (0, 0.1, 1),  # one failure is not a run yet
        (1, 0.1, 2),  # the request's own failure completes a run of two
        (3, 0.1, 3),  # two runs
        (9, 0.1, 3),  # stays on the last source
    ],
)
def test_fail_cascade_moves_down_the_chain_per_run_of_failures(
    fails_before: int, time: float, source: int
) -> None:
    policy = fail_cascade(fail_run=2, sample_first=15, fail_threshold=0.5)
    pick = policy.choose(SOURCES, req(time=time), lagging(fails_before), rng())
    assert pick is not None and pick[1] == source


def test_fail_cascade_does_not_count_the_request_twice_once_the_state_caught_up() -> None:
    policy = fail_cascade(fail_run=2, sample_first=15, fail_threshold=0.5)
    caught_up = UserState(1, history=(5, 7), history_times=(0.2, 0.1), fail_count=1)
    assert policy.fail_streak(req(track=7, time=0.1), caught_up) == 1
    assert policy.fail_streak(req(track=7, time=0.1), lagging(1, last_track=5)) == 2


def test_fail_cascade_falls_through_to_later_sources_then_gives_up() -> None:
    policy = fail_cascade(fail_run=1, sample_first=15, fail_threshold=0.5)
    played = {200, 201}
    # A run selects the second source; it is exhausted, so the third serves.
    pick = policy.choose(SOURCES, req(played, time=0.1), lagging(0), rng())
    assert pick is not None and pick[1] == 3
    # Nothing unplayed from the selected source on: the recommender's fallback takes over.
    played |= {300, 301}
    assert policy.choose(SOURCES, req(played, time=0.1), lagging(0), rng()) is None


def test_fail_cascade_samples_among_the_first_sample_first_unplayed() -> None:
    policy = fail_cascade(fail_run=2, sample_first=3, fail_threshold=0.5)
    source = fixed(list(range(50)))
    picks = Counter(policy.choose([source], req({0}), UserState(1), rng(i)) for i in range(300))
    assert {p for p, _ in picks} == {1, 2, 3}


def test_fail_cascade_with_no_sources_answers_none() -> None:
    assert fail_cascade(1, 1).choose([], req(), UserState(1), rng()) is None


def test_fail_cascade_rejects_a_zero_run() -> None:
    with pytest.raises(ConfigError, match="fail_run"):
        fail_cascade(0, 15)


def test_policies_are_deterministic_for_the_same_generator_state() -> None:
    policy = top_k_random(10)
    source = fixed(list(range(100)))
    a = [policy.choose([source], req(), UserState(1), rng(i)) for i in range(20)]
    b = [policy.choose([source], req(), UserState(1), rng(i)) for i in range(20)]
    assert a == b
    assert len(set(a)) > 1


def test_fail_streak_counts_the_sessions_own_record_not_the_lagging_state() -> None:
    from botify.recommenders.base import RecommendRequest
    from botify.recommenders.policies import fail_cascade
    from botify.state import UserState

    cascade = fail_cascade(2, 15, 0.5)
    listens = ((1, 1.0), (2, 0.9), (3, 0.1), (4, 0.2))
    request = RecommendRequest(7, 4, 0.2, frozenset({1, 2, 3, 4}), (1, 2, 3, 4), listens)
    # The state still carries the previous session's run of fails: it must not count.
    stale = UserState(7, history=(90, 91), history_times=(0.0, 0.0), fail_count=6)
    assert cascade.fail_streak(request, stale) == 2
