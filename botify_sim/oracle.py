"""The oracle ceiling: what a recommender scores that knows everything the simulator hides.

The oracle sees the session's taste, the user's consume bias and sharpness and the artist
decay, and at each step serves the unplayed track with the longest expected listen,
``σ((⟨e_r, e⟩ − b)·s)·γ^n`` (n = tracks by r's artist already played). It plays the very
episodes a driver plays (``episode_users`` and ``session_rng``), so its mean time per session
is the ceiling of the same sessions a recommender was measured on. Greedy, step by step: it
does not plan around the budget, which no recommender could either.

Only the simulator may use this module: it reads the hidden world.
"""

from __future__ import annotations

import numpy as np

from botify_sim.config import UserConfig, load_config
from botify_sim.simulate import SimSummary, episode_users
from botify_sim.user_model import Session, session_rng
from botify_sim.world import World


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # σ without overflow


class Oracle:
    """The oracle's picks on one world. Within an artist every track carries the same decay,
    so the best track overall is the best unplayed track of the artist whose best unplayed
    track, decayed, is best: one maximum over artists per step, not over tracks."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.embeddings = world.embeddings.astype(np.float64)
        # Track rows grouped by artist: artist a's rows are by_artist[bounds[a]:bounds[a + 1]].
        self.by_artist = np.argsort(world.artist_index, kind="stable")
        artists = int(world.artist_index.max()) + 1
        counts = np.bincount(world.artist_index, minlength=artists)
        self.bounds = np.concatenate([[0], np.cumsum(counts)])
        self.position = np.empty_like(self.by_artist)  # row -> its place in by_artist
        self.position[self.by_artist] = np.arange(len(self.by_artist))

    def play(self, session: Session) -> None:
        """Drive ``session`` to its end with the oracle's picks."""
        world, gamma = self.world, session.config.gamma
        expected = _sigmoid((self.embeddings @ session.taste - session.bias) * session.sharpness)
        grouped = expected[self.by_artist]  # unplayed tracks' expected listen, -1 once played
        best = np.maximum.reduceat(grouped, self.bounds[:-1])
        decay = np.ones_like(best)

        def play_row(row: int) -> None:
            artist = int(world.artist_index[row])
            grouped[self.position[row]] = -1.0
            lo, hi = self.bounds[artist], self.bounds[artist + 1]
            best[artist] = grouped[lo:hi].max()
            decay[artist] *= gamma

        play_row(world.row_of[session.first_track])
        while not session.done:
            artist = int(np.argmax(best * decay))
            lo = self.bounds[artist]
            row = int(self.by_artist[lo + int(np.argmax(grouped[lo : self.bounds[artist + 1]]))])
            play_row(row)
            session.listen(int(world.track_ids[row]))


def oracle_ceiling(
    world: World, episodes: int, seed: int, config: UserConfig | None = None
) -> SimSummary:
    """The oracle's mean time per session over the episodes a driver with ``seed`` plays."""
    config = config or load_config().user
    oracle = Oracle(world)
    values, tracks = [], []
    for episode, user in enumerate(episode_users(world, episodes, seed).tolist()):
        session = Session(world, user, session_rng(seed, episode), config)
        oracle.play(session)
        values.append(session.value)
        tracks.append(session.tracks)
    return SimSummary.of(values, tracks)
