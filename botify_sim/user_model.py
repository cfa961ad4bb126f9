"""The course's user model (reference.md §3), one session at a time.

A session picks one of the user's interests as its taste e and starts on a track drawn
uniformly among that interest's nearest. It listens to each recommendation r for
``round(σ((⟨e_r, e⟩ − bias)·sharpness) · γ^n, 2)``, where n counts the tracks by r's artist
already played in the session, and for 0 if r was already played. After each
recommendation the budget (5) drops by one with probability 1 − time; the session ends when
the budget is spent or after ``max_recommendations``.

``Session`` is a pure step machine: the in-process simulation and the HTTP driver both feed
it recommendations through ``listen`` until ``done``.
"""

from __future__ import annotations

import math

import numpy as np

from botify_sim.config import UserConfig
from botify_sim.world import World


def session_rng(seed: int, episode: int) -> np.random.Generator:
    """Episode ``episode``'s own generator: the same whichever process or order runs it."""
    return np.random.default_rng([seed, episode])


def sigmoid(z: float) -> float:
    # Two branches so that exp never overflows, however far the affinity is from the bias.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class Session:
    """One session of ``user``; ``first_track`` is its start, ``value`` its time so far."""

    def __init__(
        self, world: World, user: int, rng: np.random.Generator, config: UserConfig
    ) -> None:
        self.world, self.user, self.rng, self.config = world, user, rng, config
        which = int(rng.integers(world.interests.shape[1]))
        self.taste = world.embeddings[int(world.interests[user, which])].astype(np.float64)
        candidates = world.start_candidates[user, which]
        first_row = int(candidates[rng.integers(len(candidates))])
        self.first_track = int(world.track_ids[first_row])
        self.bias = float(world.bias[user])
        self.sharpness = float(world.sharpness[user])
        self.budget = config.budget
        self.recommendations = 0
        self.played: set[int] = {self.first_track}
        self.artist_plays: dict[int, int] = {int(world.artist_index[first_row]): 1}
        self.value = 1.0  # the start track counts as fully listened (reference.md §3)

    @property
    def done(self) -> bool:
        return self.budget <= 0 or self.recommendations >= self.config.max_recommendations

    @property
    def tracks(self) -> int:
        """Tracks in the session so far, the start track included."""
        return 1 + self.recommendations

    def listen(self, track: int) -> float:
        """The fraction of ``track`` the user listens to; advances the session."""
        if self.done:
            raise RuntimeError("the session is over")
        self.recommendations += 1
        time = self._listen_time(track)
        if self.rng.random() > time:  # probability 1 − time, written as the course did
            self.budget -= 1
        self.value += time
        return time

    def _listen_time(self, track: int) -> float:
        row = self.world.row_of.get(track)
        if row is None:  # not in the world's catalog: nothing to listen to
            return 0.0
        artist = int(self.world.artist_index[row])
        n = self.artist_plays.get(artist, 0)
        # The course counted every play of the artist, a repeated track's included.
        self.artist_plays[artist] = n + 1
        if track in self.played:
            return 0.0
        self.played.add(track)
        affinity = float(self.world.embeddings[row] @ self.taste)
        return round(sigmoid((affinity - self.bias) * self.sharpness) * self.config.gamma**n, 2)
