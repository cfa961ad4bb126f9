"""Builders for test data."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from botify.catalog import Catalog, generate_catalog
from botify.events import ListenEvent, make_listen_event
from botify.models import MODELS, RECIPES

_ids = itertools.count()


@contextmanager
def registry_restored(*plugins: str) -> Iterator[None]:
    """The model registry as it was before, afterwards, with the ``plugins`` modules
    forgotten: later tests see only the models registered before."""
    models, recipes = dict(MODELS), dict(RECIPES)
    try:
        yield
    finally:
        MODELS.clear()
        MODELS.update(models)
        RECIPES.clear()
        RECIPES.update(recipes)
        for plugin in plugins:
            sys.modules.pop(plugin, None)


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
