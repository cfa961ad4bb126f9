"""The oracle: the best unplayed track with the artist decay, on the driver's own episodes."""

from __future__ import annotations

import numpy as np
import pytest

from botify.recommenders import RecommenderContext, build_recommender
from botify_sim.oracle import Oracle, oracle_ceiling
from botify_sim.simulate import episode_users, simulate_in_process
from botify_sim.user_model import Session, session_rng
from tests.unit.sim.worlds import small_world, user_config

pytestmark = pytest.mark.unit
SEED = 11


def brute_force_pick(session: Session, world, played: set[int]) -> int:
    """The best row by scoring every track, written the plain way."""
    best, best_row = -1.0, -1
    for row in range(len(world.track_ids)):
        if row in played:
            continue
        affinity = float(world.embeddings[row].astype(np.float64) @ session.taste)
        z = (affinity - session.bias) * session.sharpness
        n = session.artist_plays.get(int(world.artist_index[row]), 0)
        value = 1 / (1 + np.exp(-z)) * session.config.gamma**n
        if value > best + 1e-12:
            best, best_row = value, row
    return best_row


def test_each_pick_is_the_best_unplayed_track_with_the_artist_decay() -> None:
    world = small_world()
    config = user_config()
    oracle = Oracle(world)
    for episode, user in enumerate(episode_users(world, 6, SEED).tolist()):
        picked: list[int] = []
        session = Session(world, user, session_rng(SEED, episode), config)
        listen = session.listen

        def spy(track: int, picked: list[int] = picked, listen=listen) -> float:
            picked.append(track)
            return listen(track)

        session.listen = spy  # type: ignore[method-assign]
        oracle.play(session)
        # Replay the same episode, checking every pick against a full scan.
        replay = Session(world, user, session_rng(SEED, episode), config)
        played = {world.row_of[replay.first_track]}
        for track in picked:
            assert world.row_of[track] == brute_force_pick(replay, world, played)
            played.add(world.row_of[track])
            replay.listen(track)
        assert replay.value == session.value


def test_the_oracle_beats_every_recommender_on_the_same_episodes() -> None:
    world = small_world()
    ceiling = oracle_ceiling(world, 150, SEED, user_config())
    context = RecommenderContext(world.catalog, seed=0)
    for name in ("random", "sticky_artist"):
        got = simulate_in_process(build_recommender(name, context), world, 150, SEED, user_config())
        assert ceiling.mean_time > 2 * got.mean_time
    assert ceiling.sessions == 150


def test_the_ceiling_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    world = small_world()
    a = oracle_ceiling(world, 60, SEED, user_config())
    assert a == oracle_ceiling(world, 60, SEED, user_config())
    assert a.mean_time != oracle_ceiling(world, 60, SEED + 1, user_config()).mean_time
