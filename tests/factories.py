"""Builders for test data."""

from __future__ import annotations

import itertools

from botify.catalog import Catalog, generate_catalog
from botify.events import ListenEvent, make_listen_event

_ids = itertools.count()


def small_catalog(n_tracks: int = 200, n_artists: int = 20, seed: int = 0) -> Catalog:
    return generate_catalog(n_tracks, n_artists, seed=seed)


def listen(
    user: int = 1,
    track: int = 10,
    time: float = 1.0,
    recommendation: int | None = 11,
    message: str = "next",
    timestamp: int | None = None,
    recommender: str = "random",
    experiments: dict[str, str] | None = None,
) -> ListenEvent:
    n = next(_ids)
    return make_listen_event(
        event_id=f"e{n}",
        message=message,
        timestamp=1_700_000_000_000 + n if timestamp is None else timestamp,
        user=user,
        track=track,
        time=time,
        recommendation=None if message == "last" else recommendation,
        latency=0.001,
        recommender=recommender,
        experiments=experiments or {},
    )
