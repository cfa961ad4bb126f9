"""The course's user model (reference.md §3), one session at a time.

A session picks one of the user's interests as its taste, starts on a track among that
interest's nearest, and listens to each recommendation r for
``round(σ((⟨e_r, taste⟩ − bias)·sharpness) · γ^n, 2)`` (n: tracks by r's artist already played;
0 for a repeat). Each recommendation costs one unit of a budget of 5 with probability
1 − time; the session ends when the budget is spent or after ``max_recommendations``.
"""

from __future__ import annotations

import math
import random

import numpy as np

from botify_sim.config import UserConfig
from botify_sim.world import World


class Session:
    def __init__(self, world: World, user: int, rng: random.Random, config: UserConfig) -> None:
        self.world, self.user, self.rng, self.config = world, user, rng, config
        which = rng.randrange(world.interests.shape[1])
        self.taste = world.embeddings[int(world.interests[user, which])].astype(np.float64)
        candidates = world.start_candidates[user, which]
        start_row = int(candidates[rng.randrange(len(candidates))])
        self.start = int(world.track_ids[start_row])
        self.bias = float(world.bias[user])
        self.sharpness = float(world.sharpness[user])
        self.budget = config.budget
        self.recommendations = 0
        self.played: set[int] = {self.start}
        self.artist_plays: dict[int, int] = {int(world.artist_index[start_row]): 1}
        self.value = 1.0  # the start track counts as fully listened (reference.md §3)
        self.tracks = 1

    @property
    def done(self) -> bool:
        return self.budget <= 0 or self.recommendations >= self.config.max_recommendations

    def listen(self, track: int) -> float:
        """The listened fraction of a recommended track; updates the session."""
        row = self.world.row_of.get(track)
        self.recommendations += 1
        self.tracks += 1
        if row is None or track in self.played:
            time = 0.0
        else:
            artist = int(self.world.artist_index[row])
            n = self.artist_plays.get(artist, 0)
            affinity = float(self.world.embeddings[row] @ self.taste)
            z = (affinity - self.bias) * self.sharpness
            time = round(1.0 / (1.0 + math.exp(-z)) * self.config.gamma**n, 2) if z > -700 else 0.0
            self.played.add(track)
            self.artist_plays[artist] = n + 1
        if self.rng.random() < 1.0 - time:
            self.budget -= 1
        self.value += time
        return time
