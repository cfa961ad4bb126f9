"""A planted world for the trainer's tests: each user loves one artist, sessions play that
artist's tracks (listened to the end) with a few other tracks skipped in between. One track
per artist is never played, to test what models know of unseen tracks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from botify.catalog import Catalog, Track
from botify.settings import TrainerSettings
from botify.training import example_schema

N_ARTISTS, PER_ARTIST, USERS, ROUNDS, SESSION = 8, 16, 48, 6, 5


@dataclass(frozen=True)
class World:
    catalog: Catalog
    frame: pl.DataFrame
    unseen: tuple[int, ...]  # one catalog track per artist that no example mentions

    def artist(self, track: int) -> str:
        return self.catalog.artist_of(track)


def planted_world(seed: int = 0, users: int = USERS, rounds: int = ROUNDS) -> World:
    rng = np.random.default_rng(seed)
    catalog = Catalog(
        tuple(
            Track(1000 + a * PER_ARTIST + i, f"artist {a}", f"t{i}", f"genre {a % 3}")
            for a in range(N_ARTISTS)
            for i in range(PER_ARTIST)
        )
    )
    playable = {
        a: [1000 + a * PER_ARTIST + i for i in range(PER_ARTIST - 1)] for a in range(N_ARTISTS)
    }
    unseen = tuple(1000 + a * PER_ARTIST + PER_ARTIST - 1 for a in range(N_ARTISTS))
    rows: list[tuple[int, int, int, int, float]] = []
    for _ in range(rounds):  # round-major time: every user is in every time slice
        for user in range(users):
            fav = playable[user % N_ARTISTS]
            session = [int(t) for t in rng.choice(fav, SESSION, replace=False)]
            start = prev = session[0]
            for track in session[1:]:
                if rng.random() < 0.6:
                    other = playable[int(rng.integers(N_ARTISTS))]
                    noise = int(other[int(rng.integers(len(other)))])
                    if noise not in fav:
                        rows.append((user, start, prev, noise, float(rng.uniform(0, 0.1))))
                rows.append((user, start, prev, track, float(rng.uniform(0.8, 1.0))))
                prev = track
    n = len(rows)
    frame = pl.DataFrame(
        {
            "timestamp": np.arange(n, dtype=np.int64) + 1_700_000_000_000,
            "user": [r[0] for r in rows],
            "session_start": [r[1] for r in rows],
            "context": [r[2] for r in rows],
            "track": [r[3] for r in rows],
            "time": [r[4] for r in rows],
            "partition": np.zeros(n, dtype=np.int32),
            "offset": np.arange(n, dtype=np.int64),
            "recommender": ["random"] * n,
        },
        schema=example_schema(),
    )
    return World(catalog, frame, unseen)


@pytest.fixture(scope="session")
def world() -> World:
    return planted_world()


def fast_settings(**overrides: object) -> TrainerSettings:
    """Small models and generous budgets: the planted world trains in well under a second.
    Every model trains every round, on the whole window, promoted on the primary metric."""
    small = {"dim": 16, "batch_size": 256, "lr": 0.05}
    every: dict[str, object] = {"every_rounds": 1, "budget_s": None, "window_rows": None}
    every["promote_on"] = None
    base: dict[str, object] = {
        "device": "cpu",
        "top_k": 20,
        "train_budget_s": 60.0,
        "export_budget_s": 60.0,
        "contextual": {**every, "dim": 8, "batch_size": 256, "lr": 0.05, "l2": 1e-2, "epochs": 30},
        "next_track": {**every, **small, "epochs": 15},
        "dae": {**every, "dim": 32, "batch_size": 16, "lr": 0.01, "epochs": 30, "dropout": 0.3},
        "lightgcn": {**every, **small, "lr": 0.05, "epochs": 30},
        "lightfm": {**every, **small, "epochs": 15},
        "affinity": {**every, **small, "epochs": 15, "l2": 1e-3},
    }
    return TrainerSettings.model_validate(base | overrides)
