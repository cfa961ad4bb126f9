"""The recommender contract.

A recommender is a pure function of the request and what the platform knows: it never does
I/O on the request path. Everything it reads (catalog, popularity, model artifacts) comes
through the ``RecommenderContext`` it was built with, refreshed off the request path.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import mmh3

from botify.artifacts import ModelSlot
from botify.catalog import Catalog
from botify.state import UserState

# Bounded rejection sampling before falling back to an explicit complement.
_MAX_TRIES = 32


@dataclass(frozen=True, slots=True)
class RecommendRequest:
    """One ``/next`` call: who, what they just played and how much of it."""

    user: int
    track: int
    time: float
    # Tracks played or served in the current session, the request's track included.
    played: frozenset[int] = frozenset()
    # The same tracks in session order: the start track first, the request's track last
    # (empty when the caller does not know the order; then state.session_start stands in).
    session: tuple[int, ...] = ()
    # (track, fraction listened) of the session's listens, oldest first, the request's own
    # last: fresher than the stream's state (empty when the caller does not keep them).
    listens: tuple[tuple[int, float], ...] = ()


@dataclass
class Popularity:
    """Tracks ranked by listen time, refreshed by the service in the background."""

    top: tuple[int, ...] = ()


@dataclass
class RecommenderContext:
    catalog: Catalog
    seed: int = 0
    popularity: Popularity = field(default_factory=Popularity)
    # One slot per trained model that some recommender serves; the API's model watcher
    # fills them in the background (services/api), recommenders only read them.
    models: dict[str, ModelSlot] = field(default_factory=dict)

    def slot(self, model: str) -> ModelSlot:
        """The slot of ``model``, created empty on first use."""
        return self.models.setdefault(model, ModelSlot(model))


class Recommendation(NamedTuple):
    """One answer: the track, and the version of the model whose ranking chose it (None when
    no model did: a baseline, or a model-backed recommender's fallback)."""

    track: int
    model_version: int | None = None


_new_tuple = tuple.__new__


def recommendation(track: int, model_version: int | None = None) -> Recommendation:
    """``Recommendation(track, model_version)`` for the request path: a quarter of the cost
    of the named tuple's own constructor (about 0.2 µs instead of 0.9 µs)."""
    return _new_tuple(Recommendation, (track, model_version))


class Recommender(Protocol):
    @property
    def name(self) -> str:
        """The registry name, which also salts the request's generator."""

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        """A catalog track not in ``request.played`` (unless the catalog is exhausted), with
        the model version behind it."""


def request_rng(seed: int, request: RecommendRequest, salt: str = "") -> random.Random:
    """A generator seeded by the request, so the same request and seed give the same answer."""
    key = f"{seed}:{salt}:{request.user}:{request.track}:{len(request.played)}"
    return random.Random(mmh3.hash64(key, signed=False)[0])


def pick_unplayed(
    candidates: tuple[int, ...] | list[int], played: frozenset[int], rng: random.Random
) -> int | None:
    """A uniform pick among candidates not played yet, or None if every one was."""
    n = len(candidates)
    if n == 0:
        return None
    for _ in range(min(_MAX_TRIES, 2 * n)):
        t = candidates[rng.randrange(n)]
        if t not in played:
            return t
    rest = [t for t in candidates if t not in played]
    return rest[rng.randrange(len(rest))] if rest else None


def pick_any(catalog: Catalog, played: frozenset[int], rng: random.Random) -> int:
    """A uniform unplayed catalog track; any track once the whole catalog was played."""
    ids = catalog.ids
    n = len(ids)
    for _ in range(_MAX_TRIES):
        t = int(ids[rng.randrange(n)])
        if t not in played:
            return t
    rest = [int(t) for t in ids if int(t) not in played]
    pool = rest or [int(t) for t in ids]
    return pool[rng.randrange(len(pool))]
