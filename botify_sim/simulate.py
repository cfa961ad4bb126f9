"""Sessions against a recommender in this process: for calibration and quick comparisons.

Episode i plays user ``episode_users(...)[i]`` with the generator ``session_rng(seed, i)``,
exactly as the HTTP driver does, so both give the same sessions against the same recommender.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from botify.recommenders import Recommender, RecommendRequest
from botify.state import UserState
from botify_sim.config import UserConfig, load_config
from botify_sim.user_model import Session, session_rng
from botify_sim.world import World


def episode_users(world: World, episodes: int, seed: int) -> np.ndarray:
    """Which user plays each episode: uniform over users, as the course sampled them."""
    return np.random.default_rng([seed, 0xE915]).integers(0, world.users, episodes)


@dataclass(frozen=True)
class SimSummary:
    sessions: int
    mean_time: float
    sem_time: float  # standard error of mean_time
    mean_tracks: float

    @classmethod
    def of(cls, values: list[float], tracks: list[int]) -> SimSummary:
        v = np.asarray(values, dtype=np.float64)
        sem = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
        return cls(len(v), float(v.mean()), sem, float(np.mean(tracks)))


def play_session(session: Session, recommender: Recommender) -> None:
    """Drive one session to its end, sending what the API would send the recommender: the
    session's tracks in order and every listen so far (``botify.serving.Router``)."""
    track, time = session.first_track, 1.0
    state = UserState(session.user)
    order: dict[int, None] = {}
    listens: list[tuple[int, float]] = []
    while not session.done:
        order.pop(track, None)
        order[track] = None
        listens.append((track, time))
        played = tuple(order)
        request = RecommendRequest(
            session.user, track, time, frozenset(played), played, tuple(listens)
        )
        track = recommender.recommend(request, state).track
        time = session.listen(track)


def simulate_in_process(
    recommender: Recommender,
    world: World,
    episodes: int,
    seed: int,
    config: UserConfig | None = None,
) -> SimSummary:
    """``episodes`` sessions against ``recommender``; the user model from config.toml by default."""
    config = config or load_config().user
    values, tracks = [], []
    for episode, user in enumerate(episode_users(world, episodes, seed).tolist()):
        session = Session(world, user, session_rng(seed, episode), config)
        play_session(session, recommender)
        values.append(session.value)
        tracks.append(session.tracks)
    return SimSummary.of(values, tracks)
