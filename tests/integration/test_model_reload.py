"""Hot reload against the real broker and Redis: a trainer publishes versions while the API
serves requests; no request fails and latency holds while versions are swapped in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis.asyncio as aioredis

from botify import keys
from botify.artifacts import DataWindow, ModelArtifact, ModelMeta, ModelSlot
from botify.model_store import Announcement, AnnouncementFeed, ModelAnnouncer, ModelStore
from botify.recommenders import BASELINES, Recommendation, RecommendRequest
from botify.settings import (
    ExperimentsSettings,
    KafkaSettings,
    ModelSettings,
    RedisSettings,
    Settings,
)
from botify.state import UserState
from services.api.app import create_app
from services.api.model_watcher import ModelWatcher, VersionSource

ECHO = "version_echo"
# Below this, twice the baseline p99 is scheduler noise on a shared two-core machine, not
# an effect of the reload: a fresh-clone CI run measured p99 2.6 ms normally and 10.5 ms
# during reloads, while three runs alone gave 2.3-5.1 ms. A reload that held the event loop
# for its load (80-120 ms here) would still be far above twice this floor.
LATENCY_FLOOR_S = 0.008


@dataclass
class VersionEcho:
    """Answers with the track whose id is the served model version (0 before any), so the
    client sees which version answered. Test-only: registered by the test, not the registry."""

    slot: ModelSlot
    name: str = ECHO

    def recommend(self, request: RecommendRequest, state: UserState) -> Recommendation:
        artifact = self.slot.artifact
        if artifact is None:
            return Recommendation(0)
        # A lookup in the model's arrays, as a model-backed recommender makes.
        row = artifact.neighbours(request.track)
        assert row is not None and row.size
        return Recommendation(artifact.version, artifact.version)


@dataclass
class TimedLoads:
    """The API's store, recording when each load ran."""

    inner: VersionSource
    intervals: list[tuple[float, float]] = field(default_factory=list)

    async def current(self, name: str) -> int | None:
        return await self.inner.current(name)

    def load(self, name: str, version: int) -> ModelArtifact:
        started = time.perf_counter()
        try:
            return self.inner.load(name, version)
        finally:
            self.intervals.append((started, time.perf_counter()))


def model_arrays(
    n_tracks: int, n_users: int = 0, k: int = 16, d: int = 16, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "track_ids": np.arange(n_tracks, dtype=np.int64),
        "track_neighbours": rng.integers(0, n_tracks, size=(n_tracks, k), dtype=np.int64),
        "context_emb": rng.standard_normal((n_tracks, d), dtype=np.float32),
        "track_emb": rng.standard_normal((n_tracks, d), dtype=np.float32),
    }
    if n_users:
        arrays["user_ids"] = np.arange(n_users, dtype=np.int64)
        arrays["user_top"] = rng.integers(0, n_tracks, size=(n_users, k), dtype=np.int64)
        arrays["user_emb"] = rng.standard_normal((n_users, d), dtype=np.float32)
    return arrays


def meta(name: str) -> ModelMeta:
    now = int(time.time() * 1000)
    return ModelMeta(name, 0, None, now, DataWindow(now - 1000, now, 1000))


@dataclass
class Request:
    started: float
    latency: float
    version: int | None  # None: the request failed


@dataclass
class Api:
    client: httpx.AsyncClient
    watcher: ModelWatcher
    # The trainer's side: its own store over the same directory and Redis.
    store: ModelStore
    announcer: ModelAnnouncer
    slot: ModelSlot
    failures: list[str] = field(default_factory=list)
    users: int = 0

    async def next(self) -> Request:
        """One ``/next`` for a new user, and which version answered it."""
        self.users += 1
        started = time.perf_counter()
        try:
            resp = await self.client.post(f"/next/{self.users}", json={"track": 7, "time": 0.5})
        except Exception as exc:
            self.failures.append(repr(exc))
            return Request(started, time.perf_counter() - started, None)
        latency = time.perf_counter() - started
        if resp.status_code != 200:
            self.failures.append(f"{resp.status_code}: {resp.text}")
            return Request(started, latency, None)
        return Request(started, latency, resp.json()["track"])

    async def until_served(self, version: int, timeout: float = 10) -> list[Request]:
        """Requests until one is answered by ``version`` (bounded in time)."""
        out: list[Request] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out.append(await self.next())
            if out[-1].version == version:
                return out
        raise AssertionError(f"v{version} not served within {timeout} s")

    def counter(self, metric: str) -> float | None:
        labels = {"model": self.slot.name}
        return self.watcher._metrics.registry.get_sample_value(metric, labels)


MakeApi = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def model_name() -> str:
    return f"echo_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_api(
    tmp_path: Path,
    broker_url: str,
    redis_url: str,
    unique_topic: str,
    model_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> MakeApi:
    monkeypatch.setitem(BASELINES, ECHO, lambda ctx, params: VersionEcho(ctx.slot(model_name)))
    experiments = tmp_path / "experiments.toml"
    experiments.write_text("# no experiment: every user gets the default recommender\n")

    @asynccontextmanager
    async def make(
        poll_s: float,
        announce: bool = True,
        before_start: Callable[[ModelStore], Awaitable[Any]] | None = None,
    ) -> AsyncIterator[Api]:
        settings = Settings(
            kafka=KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic),
            redis=RedisSettings(url=redis_url),
            experiments=ExperimentsSettings(path=experiments, default_recommender=ECHO),
            models=ModelSettings(
                dir=tmp_path / "models", announce_topic=f"{unique_topic}.models", poll_s=poll_s
            ),
            run_dir=tmp_path,
        )
        redis = aioredis.Redis.from_url(redis_url)
        announcer = ModelAnnouncer(settings.kafka, settings.models.announce_topic, "test")
        store = ModelStore.from_settings(settings, redis, announcer if announce else None)
        try:
            if before_start is not None:
                await before_start(store)
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://botify", timeout=10
                ) as client:
                    watcher: ModelWatcher = app.state.model_watcher
                    yield Api(client, watcher, store, announcer, watcher.slots[model_name])
        finally:
            await asyncio.to_thread(announcer.close)
            await redis.aclose()

    return make


def p99(requests: list[Request]) -> float:
    return float(np.percentile([r.latency for r in requests], 99))


@pytest.mark.slow
async def test_versions_swap_in_without_failed_requests_or_a_latency_spike(
    make_api: MakeApi, model_name: str
) -> None:
    # Four times the simulator's catalog; users grow from version to version, as they do.
    n_tracks, n_users, versions = 200_000, 50_000, 5

    async def first_version(store: ModelStore) -> None:
        await store.publish(meta(model_name), model_arrays(n_tracks, n_users, seed=0))

    # The trainer announces by hand, once its publish is over, so that its own work (in this
    # process) overlaps no measured request; the API's loads all do.
    async with make_api(poll_s=60, announce=False, before_start=first_version) as api:
        assert api.slot.version == 1  # served from the first request on
        loads = TimedLoads(api.watcher.store)
        api.watcher.store = loads
        for _ in range(100):  # warm-up
            await api.next()
        requests = [await api.next() for _ in range(400)]
        assert {r.version for r in requests} == {1}
        for i in range(2, versions + 2):
            arrays = model_arrays(n_tracks, n_users + 1000 * i, seed=i)
            published = await api.store.publish(meta(model_name), arrays)
            assert published.version == i
            path = str(api.store.path(model_name, i))
            announcement = Announcement(model_name, i, path, published.created_ms)
            announcing = asyncio.create_task(
                asyncio.to_thread(api.announcer.announce, announcement)
            )
            started = time.monotonic()
            switch = await api.until_served(i)
            # The poll would take 60 s: the announcement made the switch.
            assert time.monotonic() - started < 10
            versions_seen = [r.version for r in switch]
            assert versions_seen == sorted(versions_seen), "an older version answered after a newer"
            requests += switch
            requests += [await api.next() for _ in range(50)]
            assert await announcing

    assert api.failures == []
    assert api.slot.version == versions + 1
    assert api.counter("botify_api_model_reloads_total") == versions + 1
    assert api.counter("botify_api_model_version") == versions + 1
    assert len(loads.intervals) == versions

    def overlaps_a_load(r: Request) -> bool:
        # A load's end is followed by the swap, on the loop: count it as part of the reload.
        return any(
            r.started < end + 0.01 and r.started + r.latency > s for s, end in loads.intervals
        )

    during = [r for r in requests if overlaps_a_load(r)]
    normal = [r for r in requests if not overlaps_a_load(r)]
    assert len(during) >= 5 * versions, "too few requests overlapped a reload to measure it"
    base, reload = p99(normal), p99(during)
    print(
        f"p99 {base * 1e3:.2f} ms normally ({len(normal)} requests), {reload * 1e3:.2f} ms "
        f"during reloads ({len(during)}); loads took "
        f"{[round(e - s, 3) for s, e in loads.intervals]} s"
    )
    assert reload <= 2 * max(base, LATENCY_FLOOR_S)


async def test_an_announcement_makes_the_switch_long_before_the_poll(
    make_api: MakeApi, model_name: str
) -> None:
    async with make_api(poll_s=60) as api:
        assert api.slot.artifact is None
        assert (await api.next()).version == 0  # cold start: nothing published yet
        await api.store.publish(meta(model_name), model_arrays(500))  # announces
        started = time.monotonic()
        await api.until_served(1, timeout=10)
        assert time.monotonic() - started < 10  # the poll would take 60 s
    assert api.failures == []


async def test_without_announcements_the_poll_finds_the_new_version(
    make_api: MakeApi, model_name: str
) -> None:
    async with make_api(poll_s=0.2, announce=False) as api:
        await api.store.publish(meta(model_name), model_arrays(500))
        await api.until_served(1, timeout=10)
    assert api.failures == []


async def test_a_damaged_version_is_skipped_and_the_previous_one_keeps_serving(
    make_api: MakeApi, model_name: str, redis_url: str
) -> None:
    async with make_api(poll_s=0.2) as api:
        await api.store.publish(meta(model_name), model_arrays(500))
        await api.until_served(1)
        # A version whose files are damaged, made current behind the store's back.
        damaged = api.store.path(model_name, 2)
        damaged.mkdir()
        (damaged / "meta.json").write_text("{")
        redis = aioredis.Redis.from_url(redis_url)
        try:
            await redis.set(keys.model_current(model_name), 2)
        finally:
            await redis.aclose()
        deadline = time.monotonic() + 10
        while not api.counter("botify_api_model_reload_failures_total"):
            assert time.monotonic() < deadline, "the damaged version was never tried"
            await asyncio.sleep(0.05)
        assert (await api.next()).version == 1
        # The next good version is numbered above the damaged one, and served.
        assert (await api.store.publish(meta(model_name), model_arrays(500))).version == 3
        await api.until_served(3)
        assert api.counter("botify_api_model_reload_failures_total") == 1
    assert api.failures == []


async def test_an_invalid_announcement_is_skipped_and_the_next_one_is_followed(
    make_api: MakeApi, model_name: str
) -> None:
    async with make_api(poll_s=60) as api:
        feed = api.watcher._feed
        assert isinstance(feed, AnnouncementFeed)
        publisher = api.announcer._publisher
        publisher.publish_raw(f"{api.watcher._settings.models.announce_topic}", None, b"{oops")
        assert publisher.flush() == 0
        await api.store.publish(meta(model_name), model_arrays(500))  # announces
        await api.until_served(1, timeout=10)
        assert feed.invalid == 1
    assert api.failures == []


# From the CLI's exit until each instance serves the version (the pointer poll: 60 s).
ROLLBACK_FOLLOW_S = 10.0


def botify_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "botify_cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_rollback_from_the_cli_is_followed_by_every_api_and_recorded(
    make_api: MakeApi,
    model_name: str,
    tmp_path: Path,
    broker_url: str,
    redis_url: str,
    unique_topic: str,
) -> None:
    # poll_s=60: the rollback's announcement must do it, on both instances.
    async with make_api(poll_s=60) as first, make_api(poll_s=60) as second:
        for seed in (1, 2):
            await first.store.publish(meta(model_name), model_arrays(500, seed=seed))
        for api in (first, second):
            await api.until_served(2)
        env = {
            "BOTIFY_REDIS__URL": redis_url,
            "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": broker_url,
            "BOTIFY_MODELS__DIR": str(tmp_path / "models"),
            "BOTIFY_MODELS__ANNOUNCE_TOPIC": f"{unique_topic}.models",
        }
        started = time.monotonic()
        done = await asyncio.to_thread(botify_cli, "models", "rollback", model_name, env=env)
        assert done.returncode == 0, done.stderr
        assert f"{model_name}: rolled back from v2 to v1" in done.stdout
        returned = time.monotonic()
        for api in (first, second):
            await api.until_served(1, timeout=ROLLBACK_FOLLOW_S)
        print(
            f"rollback: the CLI took {returned - started:.2f} s; both instances served v1 "
            f"{time.monotonic() - returned:.2f} s after it returned"
        )
        assert [(r.version) for r in [await api.next() for api in (first, second)]] == [1, 1]

        moves = await first.store.promotions(model_name)
        assert [(m.action, m.previous, m.version) for m in moves] == [
            ("promote", None, 1),
            ("promote", 1, 2),
            ("rollback", 2, 1),
        ]
        shown = await asyncio.to_thread(botify_cli, "models", "history", model_name, env=env)
        assert shown.returncode == 0, shown.stderr
        rows = [line for line in shown.stdout.splitlines() if "│ v" in line or "│ -" in line]
        assert len(rows) == 3 and "rollback" in rows[-1] and "v2" in rows[-1], shown.stdout

        # The next publication moves the pointer past the rolled-back one, as usual.
        assert (await first.store.publish(meta(model_name), model_arrays(500))).version == 3
        for api in (first, second):
            await api.until_served(3)
    assert first.failures == second.failures == []
