"""Serving policies: which one track to serve from ranked candidate lists.

A policy reads a chain of candidate sources. A source is any function of the request that
returns a ``Ranked`` list (best first, with the version of the model that ranked it) or None
when it has nothing to offer (no model yet, an anchor or user the model does not know).
Sources are called lazily and in order, so a later source costs nothing once an earlier one
answered. A policy never serves a track of ``request.played``; it returns the track with the
version that ranked it, or None when no source could answer, and the recommender then falls
back (in the end to the catalog, as the baselines do).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from botify.catalog import Catalog
from botify.errors import ConfigError
from botify.recommenders.base import Recommendation, RecommendRequest, recommendation
from botify.state import StateConfig, UserState

_STREAM_FAIL_THRESHOLD = StateConfig().fail_threshold

# A served track and the version of the model whose ranking it came from.
Pick = Recommendation


@dataclass(frozen=True, slots=True)
class Ranked:
    """A source's candidates, best first, and the version of the model that ranked them."""

    tracks: Sequence[int]
    version: int | None = None


class CandidateSource(Protocol):
    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        """Ranked candidates for this request, or None if the source has none."""


class Policy(Protocol):
    def choose(
        self,
        sources: Sequence[CandidateSource],
        request: RecommendRequest,
        state: UserState,
        rng: random.Random,
    ) -> Pick | None:
        """One unplayed track from the sources, or None if none of them has one."""


def _ints(tracks: Sequence[int]) -> Sequence[int]:
    # numpy scalars hash like ints but would leak into responses as np.int64.
    return tracks.tolist() if isinstance(tracks, np.ndarray) else tracks


def first_unplayed(ranked: Sequence[int], played: frozenset[int], n: int) -> list[int]:
    """The first ``n`` distinct candidates not in ``played``, in ranked order."""
    out: list[int] = []
    if n <= 0:
        return out
    ranked = _ints(ranked)
    head = list(ranked[:n])
    # Common case, at C speed: nothing in the head was played or listed twice.
    if played.isdisjoint(head) and len(set(head)) == len(head):
        return head
    # A source may list a track twice (a union of lists): it is one candidate.
    seen: set[int] = set()
    for t in ranked:
        if t not in played and t not in seen:
            seen.add(t)
            out.append(t)
            if len(out) == n:
                break
    return out


def sample_top(
    ranked: Sequence[int], played: frozenset[int], k: int, rng: random.Random
) -> int | None:
    """Uniform among the first ``k`` unplayed candidates, or None if there is none."""
    pool = first_unplayed(ranked, played, k)
    return pool[rng.randrange(len(pool))] if pool else None


def _sampling_top(
    k: int, played: frozenset[int], rng: random.Random
) -> Callable[[Sequence[int]], int | None]:
    return lambda ranked: sample_top(ranked, played, k, rng)


class _ChainWalk:
    """A policy that walks the chain of sources from ``start`` on and serves the first pick
    any source yields: an empty source falls through to the next."""

    __slots__ = ()

    def start(self, request: RecommendRequest, state: UserState, n_sources: int) -> int:
        """Which source of the chain the walk begins at."""
        return 0

    def picker(
        self, request: RecommendRequest, rng: random.Random
    ) -> Callable[[Sequence[int]], int | None]:
        """The track this policy picks from one source's ranked list, or None."""
        raise NotImplementedError

    def choose(
        self,
        sources: Sequence[CandidateSource],
        request: RecommendRequest,
        state: UserState,
        rng: random.Random,
    ) -> Pick | None:
        """One unplayed track from the sources, or None if none of them has one."""
        if not sources:
            return None
        start = self.start(request, state, len(sources))
        pick = self.picker(request, rng)
        for source in sources[start:]:
            got = source(request, state)
            if got is None:
                continue
            track = pick(_ints(got.tracks))
            if track is not None:
                return recommendation(track, got.version)
        return None


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class TopKRandom(_ChainWalk):
    """Uniform among the first ``k`` unplayed candidates of the first source that has any."""

    k: int

    def __post_init__(self) -> None:
        _positive("k", self.k)

    def picker(
        self, request: RecommendRequest, rng: random.Random
    ) -> Callable[[Sequence[int]], int | None]:
        return _sampling_top(self.k, request.played, rng)


@dataclass(frozen=True, slots=True)
class RelevanceOrder(_ChainWalk):
    """The best unplayed candidate of the first source that has any."""

    def picker(
        self, request: RecommendRequest, rng: random.Random
    ) -> Callable[[Sequence[int]], int | None]:
        def pick(ranked: Sequence[int]) -> int | None:
            best = first_unplayed(ranked, request.played, 1)
            return best[0] if best else None

        return pick


@dataclass(frozen=True, slots=True)
class ArtistDiverse(_ChainWalk):
    """Relevance order, skipping candidates whose artist the session already played
    ``max_per_artist`` times; plain relevance order when every candidate is blocked."""

    max_per_artist: int
    catalog: Catalog

    def __post_init__(self) -> None:
        _positive("max_per_artist", self.max_per_artist)

    def artist_plays(self, request: RecommendRequest) -> dict[str, int]:
        """How many of the session's tracks each artist has."""
        by_id = self.catalog.by_id
        counts: dict[str, int] = {}
        for t in request.session or request.played:
            track = by_id.get(t)
            if track is not None:
                counts[track.artist] = counts.get(track.artist, 0) + 1
        return counts

    def pick(
        self, ranked: Sequence[int], played: frozenset[int], artist_plays: dict[str, int]
    ) -> int | None:
        by_id, cap = self.catalog.by_id, self.max_per_artist
        first: int | None = None
        for t in _ints(ranked):
            if t in played:
                continue
            if first is None:
                first = t
            track = by_id.get(t)
            if track is None or artist_plays.get(track.artist, 0) < cap:
                return t
        return first

    def picker(
        self, request: RecommendRequest, rng: random.Random
    ) -> Callable[[Sequence[int]], int | None]:
        plays = self.artist_plays(request)
        return lambda r: self.pick(r, request.played, plays)


@dataclass(frozen=True, slots=True)
class FailCascade(_ChainWalk):
    """Seed 001's cascade: serve from source ``fail streak // fail_run`` of the chain (the
    last once the streak is long enough), uniformly among its first ``sample_first``
    unplayed items; a source with nothing unplayed falls through to the next."""

    fail_run: int
    sample_first: int
    # Must be the stream's threshold (StateSettings.fail_threshold) so that the request's
    # own listen and the state's fail_count count failures alike.
    fail_threshold: float = _STREAM_FAIL_THRESHOLD

    def __post_init__(self) -> None:
        _positive("fail_run", self.fail_run)
        _positive("sample_first", self.sample_first)

    def fail_streak(self, request: RecommendRequest, state: UserState) -> int:
        """Consecutive failed listens up to and including the request's own."""
        if request.listens:
            # The API's record of this session: complete and current, unlike the state.
            streak = 0
            for _, time in reversed(request.listens):
                if time >= self.fail_threshold:
                    break
                streak += 1
            return streak
        # The state may lag: its newest listen is the request's own only once the stream has
        # caught up (a track never repeats within a session), otherwise add the request's.
        if state.history and state.history[-1] == request.track:
            return state.fail_count
        return state.fail_count + 1 if request.time < self.fail_threshold else 0

    def start(self, request: RecommendRequest, state: UserState, n_sources: int) -> int:
        """Which source of a chain of ``n_sources`` the streak selects."""
        return min(self.fail_streak(request, state) // self.fail_run, n_sources - 1)

    def picker(
        self, request: RecommendRequest, rng: random.Random
    ) -> Callable[[Sequence[int]], int | None]:
        return _sampling_top(self.sample_first, request.played, rng)


def top_k_random(k: int) -> TopKRandom:
    """Uniform among the first ``k`` unplayed candidates."""
    return TopKRandom(k)


def relevance_order() -> RelevanceOrder:
    """The first unplayed candidate."""
    return RelevanceOrder()


def artist_diverse(max_per_artist: int, catalog: Catalog) -> ArtistDiverse:
    """Relevance order without a (max_per_artist + 1)-th track by one artist per session."""
    return ArtistDiverse(max_per_artist, catalog)


def fail_cascade(
    fail_run: int, sample_first: int, fail_threshold: float = _STREAM_FAIL_THRESHOLD
) -> FailCascade:
    """Move down the chain of sources after each ``fail_run`` consecutive failed listens."""
    return FailCascade(fail_run, sample_first, fail_threshold)
