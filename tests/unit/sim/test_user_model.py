from __future__ import annotations

import math

import numpy as np
import pytest

from botify.catalog import Catalog, Track
from botify_sim.config import WorldConfig
from botify_sim.user_model import Session, session_rng, sigmoid
from botify_sim.world import World
from tests.unit.sim.worlds import small_world, user_config

BIAS, SHARPNESS = 3.0, 1.5
# track: (artist, embedding). The user's one interest is track 0, so the taste is (2, 0).
TRACKS = {
    0: ("A", (2.0, 0.0)),
    1: ("A", (2.0, 0.5)),  # affinity 4
    2: ("A", (1.5, 1.0)),  # affinity 3
    3: ("A", (2.0, -1.0)),  # affinity 4
    4: ("C", (2.0, 1.0)),  # affinity 4
    5: ("D", (-2.0, 0.0)),  # affinity -4
    7: ("E", (10.0, 0.0)),  # affinity 20: always listened in full
    8: ("F", (10.0, 0.0)),
    9: ("G", (10.0, 0.0)),
}


def tiny_world() -> World:
    artists = sorted({a for a, _ in TRACKS.values()})
    return World(
        catalog=Catalog(tuple(Track(t, a, f"t{t}") for t, (a, _) in TRACKS.items())),
        embeddings=np.array([e for _, e in TRACKS.values()], dtype=np.float32),
        artist_index=np.array([artists.index(a) for a, _ in TRACKS.values()], dtype=np.int32),
        popularity=np.full(len(TRACKS), 1 / len(TRACKS)),
        interests=np.array([[0]]),
        bias=np.array([BIAS]),
        sharpness=np.array([SHARPNESS]),
        start_candidates=np.array([[[0]]]),
        config=WorldConfig(tracks=10, artists=7, dim=2),
        seed=0,
    )


class ScriptedRng:
    """Stands in for numpy's Generator: integers() gives 0, random() the scripted draws."""

    def __init__(self, draws: list[float]) -> None:
        self.draws = list(draws)

    def integers(self, n: int) -> int:
        return 0

    def random(self) -> float:
        return self.draws.pop(0)


def session(draws: list[float] | None = None, **config: object) -> Session:
    rng = ScriptedRng(draws if draws is not None else [0.5] * 300)
    return Session(tiny_world(), 0, rng, user_config(**config))  # type: ignore[arg-type]


def expected(affinity: float, n: int) -> float:
    return round(1 / (1 + math.exp(-(affinity - BIAS) * SHARPNESS)) * 0.8**n, 2)


def test_a_session_starts_on_its_interests_nearest_track_fully_listened() -> None:
    s = session()
    assert s.first_track == 0
    assert s.value == 1.0 and s.tracks == 1 and not s.done
    assert s.played == {0}


def test_listen_time_is_the_rounded_sigmoid_of_affinity_against_bias() -> None:
    s = session()
    assert s.listen(4) == expected(4.0, 0) == 0.82
    assert s.listen(5) == expected(-4.0, 0) == 0.0


def test_each_earlier_track_by_the_artist_discounts_by_gamma() -> None:
    s = session()
    # The start track (artist A) counts: track 1 is A's second play, track 2 its third.
    assert s.listen(1) == expected(4.0, 1) == 0.65
    assert s.listen(2) == expected(3.0, 2) == 0.32
    assert session(gamma=0.9).listen(1) == round(sigmoid(1.5) * 0.9, 2)


def test_a_repeated_track_gets_zero_and_still_counts_as_a_play_of_its_artist() -> None:
    s = session()
    assert s.listen(0) == 0.0  # the start track again
    assert s.listen(4) == 0.82
    assert s.listen(4) == 0.0
    # As in the course's simulator, the repeat of track 0 was a play of artist A: n = 2.
    assert s.listen(3) == expected(4.0, 2)


def test_an_unknown_track_gets_zero() -> None:
    assert session().listen(123456) == 0.0


def test_times_are_rounded_to_two_decimals() -> None:
    s = session()
    for track in (1, 2, 3, 4, 5):
        t = s.listen(track)
        assert t == round(t, 2) and 0.0 <= t <= 1.0


def test_budget_drops_with_probability_one_minus_time() -> None:
    # time 0.82: a draw above it costs a unit of budget, a draw below it does not.
    s = session([0.9, 0.5])
    s.listen(4)
    assert s.budget == 4
    s = session([0.5])
    s.listen(4)
    assert s.budget == 5


def test_session_ends_when_the_budget_is_spent() -> None:
    s = session([0.3] * 10)
    for _ in range(4):
        s.listen(0)  # repeats: time 0, every draw costs a unit
        assert not s.done
    s.listen(0)
    assert s.done and s.budget == 0 and s.tracks == 6 and s.value == 1.0
    with pytest.raises(RuntimeError):
        s.listen(4)


def test_session_ends_at_the_recommendation_cap() -> None:
    s = session([0.99] * 10, max_recommendations=3)
    assert [s.listen(t) for t in (7, 8, 9)] == [1.0, 1.0, 1.0]
    assert s.done and s.budget == 5
    assert s.value == 4.0 and s.tracks == 4


def test_value_is_one_plus_the_listened_fractions() -> None:
    s = session()
    times = [s.listen(t) for t in (4, 1, 2, 5)]
    assert s.value == pytest.approx(1.0 + sum(times))
    assert s.tracks == 5 and s.played == {0, 4, 1, 2, 5}


def test_sigmoid_never_overflows() -> None:
    assert sigmoid(-1e6) == 0.0 and sigmoid(1e6) == 1.0 and sigmoid(0.0) == 0.5


def test_same_seed_and_episode_give_the_same_session_on_a_real_world() -> None:
    w, config = small_world(), user_config()
    a = Session(w, 17, session_rng(9, 4), config)
    b = Session(w, 17, session_rng(9, 4), config)
    assert a.first_track == b.first_track and np.array_equal(a.taste, b.taste)
    # The start is one of the chosen interest's nearest tracks.
    starts = {int(w.track_ids[r]) for r in w.start_candidates[17].reshape(-1)}
    assert a.first_track in starts

    def play(s: Session) -> list[float]:
        recs = iter(w.track_ids.tolist())
        return [s.listen(next(recs)) for _ in iter(lambda: s.done, True)]

    assert play(a) == play(b) and a.value == b.value and a.tracks == b.tracks
    firsts = {Session(w, 17, session_rng(9, e), config).first_track for e in range(40)}
    assert len(firsts) > 3  # different episodes start differently
