"""Sessions against a recommender in this process: for calibration and quick comparisons.

Episode i plays user ``plan[i]`` with a generator seeded by (seed, i), so an episode is the
same whichever process or order runs it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from botify.recommenders import Recommender, RecommendRequest
from botify.state import UserState
from botify_sim.config import UserConfig
from botify_sim.user_model import Session
from botify_sim.world import World


def episode_users(world: World, episodes: int, seed: int) -> np.ndarray:
    """Which user plays each episode."""
    return np.random.default_rng([seed, 0xE915]).integers(0, world.users, episodes)


def session_rng(seed: int, episode: int) -> random.Random:
    return random.Random(f"botify-sim:{seed}:{episode}")


@dataclass(frozen=True)
class SimSummary:
    sessions: int
    mean_time: float
    sem_time: float
    mean_tracks: float

    @classmethod
    def of(cls, values: list[float], tracks: list[int]) -> SimSummary:
        v = np.asarray(values)
        sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        return cls(len(v), float(v.mean()), sem, float(np.mean(tracks)))


def play_session(session: Session, recommender: Recommender) -> None:
    """Drive one session to its end against an in-process recommender."""
    track, time = session.start, 1.0
    while not session.done:
        request = RecommendRequest(session.user, track, time, frozenset(session.played))
        track = recommender.recommend(request, UserState(session.user))
        time = session.listen(track)


def simulate_in_process(
    recommender: Recommender, world: World, episodes: int, seed: int, config: UserConfig
) -> SimSummary:
    values, tracks = [], []
    for episode, user in enumerate(episode_users(world, episodes, seed).tolist()):
        session = Session(world, user, session_rng(seed, episode), config)
        play_session(session, recommender)
        values.append(session.value)
        tracks.append(session.tracks)
    return SimSummary.of(values, tracks)
