"""Drive a botify-protocol API with simulated sessions, from several processes.

Speaks only the public protocol (reference.md §1), so it drives the original botify too:
the first ``/next`` of a session carries the start track with time 1.0, each later one the
previous recommendation and its listen time, and ``/last`` the final recommendation and
its time. Episode i plays user ``episode_users(...)[i]`` with its own generator; users are
split across processes by ``user % processes``, so a user's sessions never overlap and run
in episode order: the same seed and settings give the same sessions against a
deterministic server, whatever the number of processes.

Paced (``rate`` sessions/s), episode i starts at ``origin + i / rate`` in whichever process
runs it, or as soon as that process is free when it is late: the traffic a server sees per
second is then the same on any machine that keeps up, and how far behind the schedule each
session started is measured and reported.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import queue
import signal
import time
from collections.abc import Callable, MutableSequence, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from botify_sim.client import BotifyClient, ProtocolError
from botify_sim.config import UserConfig, load_config
from botify_sim.simulate import episode_users
from botify_sim.user_model import Session, session_rng
from botify_sim.world import World, load_world

logger = logging.getLogger(__name__)

# How often the parent reads the workers' counters and reports progress.
POLL_S = 0.1
# Paced traffic: a worker more than this far behind its schedule is reported (at most once
# per BEHIND_REPORT_S), and a run whose achieved rate falls short of the target by more than
# RATE_TOLERANCE counts as behind.
BEHIND_S = 2.0
BEHIND_REPORT_S = 10.0
RATE_TOLERANCE = 0.03
# How long the workers may take to load the world before the schedule's origin.
START_TIMEOUT_S = 120.0


class Pacer:
    """When each episode of a paced run may start: ``origin + episode / rate``.

    ``wait(episode)`` sleeps until then and returns how late the episode starts (0 when on
    time); without a rate every episode starts at once."""

    def __init__(
        self,
        origin: float,
        rate: float | None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("the rate must be positive")
        self.origin, self.rate, self.clock, self.sleep = origin, rate, clock, sleep

    def due(self, episode: int) -> float:
        return self.origin if self.rate is None else self.origin + episode / self.rate

    def wait(self, episode: int) -> float:
        if self.rate is None:
            return 0.0
        ahead = self.due(episode) - self.clock()
        if ahead > 0:
            self.sleep(ahead)
            return 0.0
        return -ahead


@dataclass(frozen=True)
class EpisodeResult:
    episode: int
    user: int
    value: float
    tracks: int
    requests: int
    error: str | None = None
    start_lag_s: float = 0.0  # how late the session started against the pace's schedule


@dataclass(frozen=True)
class DriveSummary:
    sessions: int  # completed
    failed_sessions: int
    mean_time_per_session: float
    mean_tracks_per_session: float
    requests: int
    elapsed_s: float  # from the schedule's origin (the workers ready) to the last session
    episodes: tuple[EpisodeResult, ...] = ()  # in episode order
    rate: float | None = None  # the target, sessions/s (None: as fast as possible)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def sessions_per_s(self) -> float:
        """The achieved rate: finished sessions (failed ones too) per second."""
        done = self.sessions + sum(1 for e in self.episodes if e.error)
        return done / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def sessions_per_min(self) -> float:
        return 60 * self.sessions / self.elapsed_s if self.elapsed_s else 0.0

    def start_lag_quantile(self, q: float) -> float:
        lags = [e.start_lag_s for e in self.episodes]
        return float(np.quantile(lags, q)) if lags else 0.0

    @property
    def achieved_rate(self) -> float:
        """Sessions/s. Paced: as they started, the schedule's episodes over the time from the
        origin to the latest start (``episode / rate + start_lag_s``), which leaves out the
        last session's own length: a short run on time reads as its target, not below it.
        Unpaced: ``sessions_per_s``."""
        if self.rate is None or len(self.episodes) < 2:
            return self.sessions_per_s
        last_start = max(e.episode / self.rate + e.start_lag_s for e in self.episodes)
        scheduled = max(e.episode for e in self.episodes)
        return scheduled / last_start if last_start > 0 else self.rate

    @property
    def behind(self) -> bool:
        """Paced, and the sessions started slower than the target rate."""
        if self.rate is None or not self.episodes:
            return False
        return self.achieved_rate < (1 - RATE_TOLERANCE) * self.rate

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(e.error for e in self.episodes if e.error)


def play_over_http(client: BotifyClient, session: Session) -> int:
    """One session through /next and /last; returns the number of requests."""
    user, track, listened = session.user, session.first_track, 1.0
    requests = 0
    while not session.done:
        track = client.next(user, track, listened)
        requests += 1
        listened = session.listen(track)
    client.last(user, track, listened)
    return requests + 1


def _worker(
    index: int,
    api_url: str,
    world_dir: str,
    config: UserConfig,
    seed: int,
    jobs: list[tuple[int, int]],
    progress: MutableSequence[int],
    results: mp.queues.Queue[tuple[int, list[EpisodeResult]]],
    pace: _Pace,
    api_key: str | None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    world = load_world(world_dir)
    done: list[EpisodeResult] = []
    pace.ready.release()
    if not pace.go.wait(START_TIMEOUT_S):
        results.put((index, done))
        return
    pacer = Pacer(pace.origin.value, pace.rate)
    with BotifyClient(api_url, api_key=api_key) as client:
        for episode, user in jobs:
            lag = pacer.wait(episode)
            pace.lag[index] = lag  # only this worker writes its slot: no lock needed
            session = Session(world, user, session_rng(seed, episode), config)
            try:
                requests = play_over_http(client, session)
                error = None
            except (OSError, ProtocolError, ValueError) as exc:
                client.close()  # the next session starts on a fresh connection
                requests, error = 0, f"{type(exc).__name__}: {exc}"
            done.append(
                EpisodeResult(episode, user, session.value, session.tracks, requests, error, lag)
            )
            progress[index] += 1  # only this worker writes its slot: no lock needed
    pace.lag[index] = 0.0  # done: a worker that finished late is no longer behind
    results.put((index, done))


@dataclass(frozen=True)
class _Pace:
    """What the workers share to keep one schedule: each releases ``ready`` once its world is
    loaded; the parent then sets ``origin`` and ``go``; each worker writes how late its
    current session started into its slot of ``lag``."""

    rate: float | None
    ready: Any
    go: Any
    origin: Any
    lag: Any


def _shards(plan: list[int], processes: int) -> list[list[tuple[int, int]]]:
    shards: list[list[tuple[int, int]]] = [[] for _ in range(processes)]
    for episode, user in enumerate(plan):
        shards[user % processes].append((episode, user))
    return shards


def drive(
    api_url: str,
    world_dir: Path | str,
    world: World,
    episodes: int,
    processes: int,
    seed: int,
    config: UserConfig | None = None,
    on_progress: Callable[[int], None] | None = None,
    timeout_s: float = 3600.0,
    rate: float | None = None,
    on_behind: Callable[[float], None] | None = None,
    api_key: str | None = None,
) -> DriveSummary:
    """Run ``episodes`` sessions against ``api_url`` from ``processes`` worker processes,
    at ``rate`` sessions/s if given (else as fast as they go).

    ``world`` must be the world saved in ``world_dir`` (workers load it from there).
    ``on_progress(n)`` is called in this process with the number of sessions just finished;
    ``on_behind(s)`` when a paced worker is more than ``BEHIND_S`` behind its schedule.
    ``api_key``: sent as a bearer token, for an API that requires keys.
    """
    if processes < 1:
        raise ValueError("need at least one process")
    if rate is not None and not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"the rate must be a positive number of sessions/s, got {rate}")
    config = config or load_config().user
    shards = _shards(episode_users(world, episodes, seed).tolist(), processes)
    ctx = mp.get_context("spawn")  # no inherited sockets, threads or locks
    progress = ctx.Array("q", processes, lock=False)
    results = ctx.Queue()
    pace = _Pace(
        rate,
        ctx.Semaphore(0),
        ctx.Event(),
        ctx.Value("d", 0.0, lock=False),
        ctx.Array("d", processes, lock=False),
    )
    workers = [
        ctx.Process(
            target=_worker,
            args=(
                i,
                api_url,
                str(world_dir),
                config,
                seed,
                shard,
                progress,
                results,
                pace,
                api_key,
            ),
            name=f"botify-sim-{i}",
            daemon=True,
        )
        for i, shard in enumerate(shards)
    ]
    started = time.perf_counter()
    collected: list[EpisodeResult] = []
    try:
        for w in workers:
            w.start()
        _start_together(workers, pace)
        started = time.perf_counter()
        collected = _collect(workers, progress, results, on_progress, timeout_s, pace, on_behind)
        # The traffic's time: the workers' shutdown below is not part of it.
        elapsed = time.perf_counter() - started
    finally:
        for w in workers:
            if w.pid is None:  # never started
                continue
            if w.is_alive():
                w.terminate()
            w.join(timeout=5)
    return _summary(collected, episodes, elapsed, rate)


def _start_together(workers: Sequence[mp.process.BaseProcess], pace: _Pace) -> None:
    """Wait until every live worker has loaded the world, then set the schedule's origin."""
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = len(workers)
    while waiting and time.monotonic() < deadline:
        if pace.ready.acquire(timeout=POLL_S):
            waiting -= 1
        elif not any(w.is_alive() for w in workers):
            break
    pace.origin.value = time.time()
    pace.go.set()


def _collect(
    workers: Sequence[mp.process.BaseProcess],
    progress: MutableSequence[int],
    results: mp.queues.Queue[tuple[int, list[EpisodeResult]]],
    on_progress: Callable[[int], None] | None,
    timeout_s: float,
    pace: _Pace,
    on_behind: Callable[[float], None] | None,
) -> list[EpisodeResult]:
    """Wait for every worker's results, reporting progress; a worker that died or ran past
    the timeout contributes nothing (its episodes count as failed)."""
    pending = set(range(len(workers)))
    collected: list[EpisodeResult] = []
    reported = 0

    def receive(timeout: float) -> bool:
        try:
            index, done = results.get(timeout=timeout)
        except queue.Empty:
            return False
        pending.discard(index)
        collected.extend(done)
        return True

    deadline = time.monotonic() + timeout_s
    reported_behind = -math.inf
    while pending and time.monotonic() < deadline:
        # A worker may send its results just before exiting: one last look before giving up.
        if not receive(POLL_S) and not any(workers[i].is_alive() for i in pending):
            if not receive(1.0):
                for i in sorted(pending):
                    logger.error("driver worker %d died (exit code %s)", i, workers[i].exitcode)
                break
        total = sum(progress)
        if on_progress is not None and total > reported:
            on_progress(total - reported)
        reported = total
        lag = max(pace.lag)
        if on_behind is not None and lag > BEHIND_S:
            if time.monotonic() - reported_behind >= BEHIND_REPORT_S:
                reported_behind = time.monotonic()
                on_behind(lag)
    if pending and time.monotonic() >= deadline:
        logger.error(
            "driver timed out after %.0f s; %d workers unfinished", timeout_s, len(pending)
        )
    return collected


def _summary(
    collected: list[EpisodeResult], episodes: int, elapsed: float, rate: float | None = None
) -> DriveSummary:
    collected.sort(key=lambda r: r.episode)
    ok = [r for r in collected if r.error is None]
    return DriveSummary(
        sessions=len(ok),
        failed_sessions=episodes - len(ok),
        mean_time_per_session=float(np.mean([r.value for r in ok])) if ok else 0.0,
        mean_tracks_per_session=float(np.mean([r.tracks for r in ok])) if ok else 0.0,
        requests=sum(r.requests for r in ok),
        elapsed_s=elapsed,
        episodes=tuple(collected),
        rate=rate,
    )
