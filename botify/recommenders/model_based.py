"""Recommenders that serve trained models: candidate sources read from ``ModelSlot``s, a
serving policy choosing among them, and a model-free fallback.

A source reads its slot's artifact once per call, so one answer never mixes two versions,
and reports that version with its candidates; ``ModelRecommender`` returns the version that
served each answer (None when the fallback did: cold start, or an anchor/user the model does
not know). Work per request is bounded by the candidate lists (a few hundred tracks), never
by the catalog or the model's size.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from botify.artifacts import (
    CONTEXT_EMB,
    PAD,
    TRACK_BIAS,
    TRACK_EMB,
    TRACK_IDS,
    TRACK_NEIGHBOURS,
    USER_BIAS,
    USER_EMB,
    USER_IDS,
    USER_TOP,
    ModelArtifact,
    ModelSlot,
)
from botify.catalog import Catalog
from botify.errors import ConfigError
from botify.recommenders.base import Recommender, RecommenderContext, RecommendRequest, request_rng
from botify.recommenders.policies import (
    CandidateSource,
    Pick,
    Policy,
    Ranked,
    artist_diverse,
    fail_cascade,
    relevance_order,
    top_k_random,
)
from botify.settings import RecommenderSettings, StateSettings
from botify.state import UserState

logger = logging.getLogger(__name__)

# Track ids below DENSE_FACTOR * tracks + DENSE_SLACK get a direct id -> row table (at most
# a few times the model's own size); sparser ids a sorted search.
_DENSE_FACTOR = 4
_DENSE_SLACK = 1 << 16

# Where the session is anchored: a track chosen from the request and the (lagging) state.
Anchor = Callable[[RecommendRequest, UserState], int]


def prev_anchor(request: RecommendRequest, state: UserState) -> int:
    """The track the user just listened to."""
    return request.track


def start_anchor(request: RecommendRequest, state: UserState) -> int:
    """The session's first track."""
    if request.session:
        return request.session[0]
    # Without the API's ordered session, the stream's view; a state that has not seen this
    # session yet means the session is just starting, on the request's track.
    if state.in_session and state.session_start is not None:
        return state.session_start
    return request.track


def session_listens(request: RecommendRequest, state: UserState) -> tuple[tuple[int, float], ...]:
    """The session's (track, fraction listened), oldest first, the request's own listen last
    and the start track first (as a full listen). From the API's record when the request
    has it; else from the stream's (lagging) history: its newest listens back to the start,
    as long as they are tracks of this session. Bounded by the history size."""
    if request.listens:
        return request.listens
    start = start_anchor(request, state)
    if start == request.track:
        return ((start, 1.0),)
    tail: list[tuple[int, float]] = []
    played = request.played
    history = zip(reversed(state.history), reversed(state.history_times), strict=False)
    for track, time in history:
        if track == start or track not in played:
            break
        if track != request.track:
            tail.append((track, time))
    return ((start, 1.0), *reversed(tail), (request.track, request.time))


@dataclass(frozen=True, slots=True)
class LikedAnchor:
    """The most recent session track listened to at least ``threshold``; the start track
    counts as liked, so there always is one."""

    threshold: float

    def __call__(self, request: RecommendRequest, state: UserState) -> int:
        listens = session_listens(request, state)
        for track, time in reversed(listens):
            if time >= self.threshold:
                return track
        return listens[0][0]


def make_anchor(name: str, liked_threshold: float) -> Anchor:
    """``prev``, ``start`` or ``liked``."""
    if name == "prev":
        return prev_anchor
    if name == "start":
        return start_anchor
    if name == "liked":
        return LikedAnchor(liked_threshold)
    raise ConfigError(f"unknown anchor {name!r}; known: liked, prev, start")


def artifact_problems(artifact: ModelArtifact) -> tuple[str, ...]:
    """What makes an artifact unservable: arrays whose shapes disagree (they would fail
    mid-request). Empty when it is fine."""
    arrays = artifact.arrays
    n = len(arrays[TRACK_IDS])
    users = arrays.get(USER_IDS)
    u = None if users is None else len(users)
    problems = []
    if arrays[TRACK_IDS].ndim != 1:
        problems.append(f"{TRACK_IDS} must be 1-D")
    expected = {
        TRACK_NEIGHBOURS: (2, n),
        USER_TOP: (2, u),
        CONTEXT_EMB: (2, n),
        TRACK_EMB: (2, n),
        USER_EMB: (2, u),
        TRACK_BIAS: (1, n),
        USER_BIAS: (1, u),
    }
    for name, (ndim, rows) in expected.items():
        array = arrays.get(name)
        if array is None:
            continue
        if rows is None:
            problems.append(f"{name} needs {USER_IDS}")
        elif array.ndim != ndim or len(array) != rows:
            problems.append(f"{name} has shape {array.shape}, expected {ndim}-D with {rows} rows")
    dims = {arrays[e].shape[-1] for e in (CONTEXT_EMB, TRACK_EMB, USER_EMB) if e in arrays}
    if len(dims) > 1:
        problems.append(f"embedding sizes differ: {sorted(dims)}")
    return tuple(problems)


class ServingIndex:
    """What serving needs of one artifact with one catalog, built once per version: each
    track id's model row, found in numpy so a request maps its candidates without a Python
    loop, and which rows are catalog tracks (a model may predate the catalog it is served
    with: only catalog tracks are answers)."""

    def __init__(self, artifact: ModelArtifact, catalog: Catalog) -> None:
        self.problems = artifact_problems(artifact)
        self.catalog = catalog
        ids = np.asarray(artifact.arrays[TRACK_IDS], dtype=np.int64).ravel()
        n = len(ids)
        # By row, plus a last False that row -1 ("no row") reaches.
        self._servable = np.append(np.isin(ids, catalog.ids), False)
        self._dense: np.ndarray | None = None
        if n and ids.min() >= 0 and ids.max() < _DENSE_FACTOR * n + _DENSE_SLACK:
            # Ids close to 0..n: a direct table, whose gathers are independent memory
            # reads, where a binary search waits on each miss in turn. The last entry is
            # "no row", for ids past the end.
            self._dense = np.full(int(ids.max()) + 2, -1, dtype=np.intp)
            self._dense[ids] = np.arange(n)
        else:
            order = np.argsort(ids, kind="stable")
            # A sentinel above every id ends the arrays: a search never runs off the end.
            self._sorted_ids = np.append(ids[order], np.iinfo(np.int64).max)
            self._sorted_rows = np.append(order, -1).astype(np.intp)

    def rows(self, tracks: np.ndarray) -> np.ndarray:
        """Each track's model row, -1 where the model has none."""
        if self._dense is not None:
            # As unsigned, a negative id is past the end too; one cheap op, unlike clip().
            last = len(self._dense) - 1
            return self._dense.take(
                np.minimum(tracks.astype(np.int64, copy=False).view(np.uint64), last)
            )
        pos = np.searchsorted(self._sorted_ids, tracks)
        rows = self._sorted_rows.take(pos)
        rows[self._sorted_ids.take(pos) != tracks] = -1
        return rows

    def servable(self, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The catalog tracks among ``tracks``, in order, with their model rows (-1 for a
        track the model ranks but has no row for)."""
        rows = self.rows(tracks)
        ok = self._servable.take(rows)
        if ok.all():
            return tracks, rows
        # Tracks the model ranks without a row of its own: rare, checked one by one.
        by_id = self.catalog.by_id
        for i in np.flatnonzero(rows < 0).tolist():
            ok[i] = int(tracks[i]) in by_id
        return tracks[ok], rows[ok]


# One index per live (artifact, catalog), dropped with the artifact. Keyed by id(): an
# artifact holds dicts, so it is not hashable.
_INDEXES: dict[int, ServingIndex] = {}


def serving_index(artifact: ModelArtifact, catalog: Catalog) -> ServingIndex:
    """The artifact's ``ServingIndex``, built on first use (O(model + catalog)). A model
    watcher can call it after loading a version, off the request path, so that no request
    pays for the build, and refuse the version if ``problems`` is not empty."""
    key = id(artifact)
    index = _INDEXES.get(key)
    if index is None or index.catalog is not catalog:
        index = ServingIndex(artifact, catalog)
        if index.problems:
            # Once per version: requests fall back until a good version replaces it.
            logger.error(
                "model %s v%s is not servable: %s",
                artifact.meta.name,
                artifact.version,
                "; ".join(index.problems),
            )
        if key not in _INDEXES:
            weakref.finalize(artifact, _INDEXES.pop, key, None)
        _INDEXES[key] = index
    return index


def _usable(slot: ModelSlot, catalog: Catalog) -> tuple[ModelArtifact, ServingIndex] | None:
    """The slot's artifact, read once for the whole call, with its index; None while the
    slot is empty or its version is not servable."""
    artifact = slot.artifact
    if artifact is None:
        return None
    index = serving_index(artifact, catalog)
    return None if index.problems else (artifact, index)


def _ranked(
    artifact: ModelArtifact, index: ServingIndex, found: np.ndarray | None
) -> Ranked | None:
    if found is None or not len(found):
        return None
    tracks, _ = index.servable(found)
    return Ranked(tracks.tolist(), artifact.version) if len(tracks) else None


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The model's next tracks after the anchor track, best first."""

    slot: ModelSlot
    anchor: Anchor
    catalog: Catalog
    limit: int | None = None

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = _usable(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        found = artifact.neighbours(self.anchor(request, state))
        return _ranked(artifact, index, None if found is None else found[: self.limit])


@dataclass(frozen=True, slots=True)
class UserTop:
    """The model's best tracks for the user, best first."""

    slot: ModelSlot
    catalog: Catalog
    limit: int | None = None

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = _usable(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        found = artifact.user_top(request.user)
        return _ranked(artifact, index, None if found is None else found[: self.limit])


def query(artifact: ModelArtifact, anchor: int, user: int) -> np.ndarray | None:
    """context_emb[anchor] + user_emb[user], from the parts the model has; None if neither."""
    arrays = artifact.arrays
    out: np.ndarray | None = None
    context_emb, context_row = arrays.get(CONTEXT_EMB), artifact.track_row.get(anchor)
    if context_emb is not None and context_row is not None:
        out = context_emb[context_row]
    user_emb, user_row = arrays.get(USER_EMB), artifact.user_row.get(user)
    if user_emb is not None and user_row is not None:
        out = user_emb[user_row] if out is None else out + user_emb[user_row]
    return out


def rerank(
    artifact: ModelArtifact, anchor: int, user: int, tracks: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``tracks`` (with their model ``rows``, -1 for none) by ⟨context_emb[anchor] +
    user_emb[user], track_emb[row]⟩ + track_bias[row], best first (ties in no set order).
    The model's own order where it lacks the embeddings or knows neither anchor nor user;
    tracks without a row keep their order after the scored ones."""
    return by_score(artifact, query(artifact, anchor, user), tracks, rows)


def by_score(
    artifact: ModelArtifact, q: np.ndarray | None, tracks: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``tracks`` by ⟨q, track_emb[row]⟩ + track_bias[row], best first; unchanged without
    ``q`` or track embeddings, and tracks without a row (-1) last, in their order."""
    track_emb = artifact.arrays.get(TRACK_EMB)
    if track_emb is None or q is None:
        return tracks
    track_emb = np.asarray(track_emb)
    known = rows >= 0
    complete = bool(known.all())
    scored, scored_rows = (tracks, rows) if complete else (tracks[known], rows[known])
    # take() is several times faster than fancy indexing for a few hundred rows.
    scores = track_emb.take(scored_rows, axis=0) @ q
    bias = artifact.arrays.get(TRACK_BIAS)
    if bias is not None:
        scores += np.asarray(bias).take(scored_rows)
    best = scored[scores.argsort()[::-1]]
    return best if complete else np.concatenate([best, tracks[~known]])


@dataclass(frozen=True, slots=True)
class Reranked:
    """The anchor's neighbours and the user's top tracks, re-ranked for this user and
    anchor with the model's embeddings (``rerank``)."""

    slot: ModelSlot
    anchor: Anchor
    catalog: Catalog

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = _usable(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        anchor = self.anchor(request, state)
        parts = [
            p
            for p in (artifact.neighbours(anchor), artifact.user_top(request.user))
            if p is not None and len(p)
        ]
        if not parts:
            return None
        # A track in both lists stays twice (with equal scores): policies skip repeats,
        # which costs less than deduplicating here.
        tracks, rows = index.servable(np.concatenate(parts))
        if not len(tracks):
            return None
        ranked = rerank(artifact, anchor, request.user, tracks, rows)
        return Ranked(ranked.tolist(), artifact.version)


@dataclass(frozen=True, slots=True)
class SessionTaste:
    """The neighbours of the session's ``sources`` best-liked tracks h, ranked by
    ⟨Σ w(h)·context_emb[h] / Σ w(h), track_emb[c]⟩ + bias[c] with w(h) = time(h)^power.

    One anchor is one noisy reading of what the user came for; every listen is another,
    worth as much as the user played of it, and a high power lets the few near-complete
    listens outvote the many half-hearted ones. Without embeddings, the lists' own order,
    best-liked track's first."""

    slot: ModelSlot
    catalog: Catalog
    power: float
    sources: int

    def __call__(self, request: RecommendRequest, state: UserState) -> Ranked | None:
        usable = _usable(self.slot, self.catalog)
        if usable is None:
            return None
        artifact, index = usable
        table = artifact.arrays.get(TRACK_NEIGHBOURS)
        if table is None:
            return None
        listens = session_listens(request, state)
        # Best-liked first; among equal listens, the most recent.
        best = sorted(range(len(listens)), key=lambda i: (-listens[i][1], -i))
        track_row = artifact.track_row
        rows: list[int] = []
        weights: list[float] = []
        for i in best[: self.sources]:
            track, time = listens[i]
            row = track_row.get(track)
            if row is not None:
                rows.append(row)
                weights.append(time**self.power)
        if not rows:
            return None
        # One gather for all the lists (np.asarray: plain arrays, not the memmap subclass,
        # whose per-operation overhead would dominate here). A track in several lists stays
        # several times: the policy serves one track, so repeats cost nothing.
        found = np.asarray(table).take(rows, axis=0).ravel()
        tracks, track_rows = index.servable(found[found != PAD])
        if not len(tracks):
            return None
        context_emb = artifact.arrays.get(CONTEXT_EMB)
        w = np.asarray(weights, dtype=np.float32)
        q = None
        if context_emb is not None and w.sum() > 0:
            q = (w @ np.asarray(context_emb).take(rows, axis=0)) / w.sum()
        return Ranked(by_score(artifact, q, tracks, track_rows).tolist(), artifact.version)


@dataclass
class ModelRecommender:
    """A serving policy over candidate sources, with a model-free ``fallback`` for when no
    source answers."""

    context: RecommenderContext
    name: str
    sources: tuple[CandidateSource, ...]
    policy: Policy
    fallback: Recommender
    # The version behind the latest answer, None when the fallback gave it. Concurrent
    # callers should use recommend_versioned, which returns the version with the track.
    model_version: int | None = None

    def recommend_versioned(
        self, request: RecommendRequest, state: UserState
    ) -> tuple[int, int | None]:
        """The track and the model version that served it (None: the fallback did)."""
        rng = request_rng(self.context.seed, request, self.name)
        pick: Pick | None = self.policy.choose(self.sources, request, state, rng)
        if pick is None:
            pick = (self.fallback.recommend(request, state), None)
        self.model_version = pick[1]
        return pick

    def recommend(self, request: RecommendRequest, state: UserState) -> int:
        return self.recommend_versioned(request, state)[0]


@dataclass(frozen=True)
class ServingParams:
    """The factories' parameters: ``RecommenderSettings`` plus the stream's fail threshold."""

    settings: RecommenderSettings
    fail_threshold: float

    @classmethod
    def parse(cls, params: Mapping[str, object]) -> ServingParams:
        """Validated, with the settings' defaults for anything missing; other keys ignored."""
        known = {k: v for k, v in params.items() if k in RecommenderSettings.model_fields}
        try:
            settings = RecommenderSettings.model_validate(known)
            state = StateSettings.model_validate(
                {"fail_threshold": params["fail_threshold"]} if "fail_threshold" in params else {}
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid recommender parameters: {exc}") from None
        return cls(settings, state.fail_threshold)


def contextual(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The course's Contextual: uniform among the previous track's first k unplayed
    neighbours; when the model has no list for the previous track, among the session's
    start track's.

    The model learns from (session start, later track) pairs, so it knows as contexts only
    the tracks that started sessions, while most previous tracks never did (about 70 % of
    requests in the fidelity check, docs/calibration.md). The course's service still
    answered them from the model: it exported a list for every catalog row, the untrained
    ones included. Ours has no such list; the start track is the context it was trained on
    for this very session, and its list stays the model's answer."""
    slot = context.slot("contextual")
    sources = (
        Neighbours(slot, prev_anchor, context.catalog),
        Neighbours(slot, start_anchor, context.catalog),
    )
    policy = top_k_random(params.settings.contextual_k)
    return ModelRecommender(context, "contextual", sources, policy, fallback)


def next_track(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Seeds 000/003/004: the previous track's neighbours and the user's top tracks,
    re-ranked for the user, uniform among the first k unplayed."""
    source = Reranked(context.slot("next_track"), prev_anchor, context.catalog)
    policy = top_k_random(params.settings.next_track_k)
    return ModelRecommender(context, "next_track", (source,), policy, fallback)


def dae(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Seed 002's Mult-DAE: the user's top k tracks in relevance order."""
    source = UserTop(context.slot("dae"), context.catalog, limit=params.settings.dae_k)
    return ModelRecommender(context, "dae", (source,), relevance_order(), fallback)


def cascade(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """Seed 001: LightGCN's user top, then LightFM's, then next_track's neighbours of the
    last liked track, moving down after each run of failed listens."""
    s, catalog = params.settings, context.catalog
    sources = (
        UserTop(context.slot("lightgcn"), catalog),
        UserTop(context.slot("lightfm"), catalog),
        Neighbours(context.slot("next_track"), LikedAnchor(s.liked_threshold), catalog),
    )
    policy = fail_cascade(s.cascade_fail_run, s.cascade_sample_first, params.fail_threshold)
    return ModelRecommender(context, "cascade", sources, policy, fallback)


def next_track_diverse(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The students' best recipe: anchor on the last liked track, re-rank for the user,
    relevance order without over-playing an artist."""
    s = params.settings
    source = Reranked(context.slot("next_track"), LikedAnchor(s.liked_threshold), context.catalog)
    policy = artist_diverse(s.diverse_max_per_artist, context.catalog)
    return ModelRecommender(context, "next_track_diverse", (source,), policy, fallback)


def affinity(
    context: RecommenderContext, params: ServingParams, fallback: Recommender
) -> ModelRecommender:
    """The track-affinity model's same-genre neighbours of the session's best-liked tracks,
    ranked by the session's taste (``SessionTaste``), in relevance order, one track per
    artist: what the user loved moves the session towards their taste, and a new artist
    each time avoids the decay users show for an artist they already heard
    (docs/models.md)."""
    s = params.settings
    source = SessionTaste(
        context.slot("affinity"),
        context.catalog,
        s.affinity_session_power,
        s.affinity_session_sources,
    )
    policy = artist_diverse(s.affinity_max_per_artist, context.catalog)
    return ModelRecommender(context, "affinity", (source,), policy, fallback)


ModelFactory = Callable[[RecommenderContext, ServingParams, Recommender], ModelRecommender]

# Registry name -> factory; the names are experiment-arm values.
MODEL_RECOMMENDERS: dict[str, ModelFactory] = {
    "affinity": affinity,
    "contextual": contextual,
    "next_track": next_track,
    "dae": dae,
    "cascade": cascade,
    "next_track_diverse": next_track_diverse,
}
