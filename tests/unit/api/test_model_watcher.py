from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import numpy as np
import pytest

from botify.artifacts import DataWindow, ModelArtifact, ModelMeta, ModelSlot
from botify.errors import ArtifactError
from botify.model_store import Announcement
from botify.settings import ModelSettings, Settings
from services.api.metrics import ApiMetrics
from services.api.model_watcher import ModelWatcher


def artifact(name: str, version: int) -> ModelArtifact:
    meta = ModelMeta(name, version, None, 0, DataWindow(0, version * 1000, 0))
    return ModelArtifact(meta, {"track_ids": np.arange(3, dtype=np.int64)})


@dataclass
class FakeStore:
    pointers: dict[str, int] = field(default_factory=dict)
    broken: set[tuple[str, int]] = field(default_factory=set)
    down: bool = False
    loads: list[tuple[str, int]] = field(default_factory=list)
    load_threads: list[int] = field(default_factory=list)
    pointer_reads: int = 0
    # When set, load() waits for it: a slow load in progress.
    gate: threading.Event | None = None
    # Loads that fail with a passing error (not a bad artifact) before succeeding.
    flaky: dict[tuple[str, int], int] = field(default_factory=dict)

    async def current(self, name: str) -> int | None:
        self.pointer_reads += 1
        if self.down:
            raise ConnectionError("redis is down")
        return self.pointers.get(name)

    def load(self, name: str, version: int) -> ModelArtifact:
        self.load_threads.append(threading.get_ident())
        if self.gate is not None:
            assert self.gate.wait(5)
        self.loads.append((name, version))
        if (name, version) in self.broken:
            raise ArtifactError(f"{name} v{version} is damaged")
        if self.flaky.get((name, version), 0) > 0:
            self.flaky[(name, version)] -= 1
            raise OSError("the shared volume hiccuped")
        return artifact(name, version)


@dataclass
class FakeFeed:
    on_announcement: Callable[[Announcement], None]
    started: bool = False
    stopped: bool = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def emit(self, model: str, version: int, rollback: bool = False) -> None:
        """Deliver from another thread, as the Kafka consumer thread does."""
        ann = Announcement(model, version, f"/models/{model}/{version:08d}", 0, rollback)
        thread = threading.Thread(target=self.on_announcement, args=(ann,))
        thread.start()
        thread.join()


@dataclass
class Harness:
    store: FakeStore
    slots: dict[str, ModelSlot]
    metrics: ApiMetrics
    watcher: ModelWatcher
    feeds: list[FakeFeed]

    @property
    def feed(self) -> FakeFeed:
        return self.feeds[0]

    def sample(self, name: str, metric: str = "botify_api_model_version") -> float | None:
        return self.metrics.registry.get_sample_value(metric, {"model": name})


def harness(poll_s: float = 3600.0, names: tuple[str, ...] = ("a", "b")) -> Harness:
    store = FakeStore()
    slots = {n: ModelSlot(n) for n in names}
    metrics = ApiMetrics()
    feeds: list[FakeFeed] = []

    def factory(callback: Callable[[Announcement], None]) -> FakeFeed:
        feeds.append(FakeFeed(callback))
        return feeds[-1]

    settings = Settings(models=ModelSettings(poll_s=poll_s))
    watcher = ModelWatcher(store, slots, settings, metrics, feed_factory=factory)
    return Harness(store, slots, metrics, watcher, feeds)


@asynccontextmanager
async def watching(poll_s: float = 3600.0, **pointers: int) -> AsyncIterator[Harness]:
    """A started watcher whose store's pointers name ``pointers`` (model=version), stopped
    when the block ends, whatever the test asserted."""
    h = harness(poll_s)
    h.store.pointers.update(pointers)
    await h.watcher.start()
    try:
        yield h
    finally:
        await h.watcher.stop()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_start_serves_the_version_each_pointer_names() -> None:
    async with watching(a=4) as h:
        assert h.slots["a"].version == 4
        assert h.slots["b"].artifact is None  # nothing published yet
        assert h.sample("a") == 4 and h.sample("b") == 0
        assert h.feed.started


async def test_loading_happens_in_a_worker_thread_not_on_the_event_loop() -> None:
    h = harness()
    h.store.pointers["a"] = 1
    await h.watcher.start()
    await h.watcher.stop()
    assert h.store.load_threads and threading.get_ident() not in h.store.load_threads


async def test_requests_see_the_old_version_until_the_new_one_is_fully_loaded() -> None:
    async with watching(a=1) as h:
        old = h.slots["a"].artifact
        h.store.gate = threading.Event()
        h.store.pointers["a"] = 2
        refresh = asyncio.create_task(h.watcher.refresh("a"))
        await until(lambda: len(h.store.load_threads) == 2)
        # The loop keeps running while the load is in progress, still on the old version.
        for _ in range(10):
            await asyncio.sleep(0)
            assert h.slots["a"].artifact is old
        h.store.gate.set()
        assert await refresh
        assert h.slots["a"].version == 2
        assert h.sample("a", "botify_api_model_reloads_total") == 2


async def test_the_poll_swaps_in_a_newer_version_without_any_announcement() -> None:
    async with watching(poll_s=0.02, b=1) as h:
        h.store.pointers["b"] = 3
        await until(lambda: h.slots["b"].version == 3)
        assert h.sample("b") == 3


async def test_an_announcement_triggers_the_swap_long_before_the_next_poll() -> None:
    async with watching(poll_s=3600) as h:
        h.store.pointers["a"] = 5
        started = time.monotonic()
        h.feed.emit("a", 5)
        await until(lambda: h.slots["a"].version == 5, timeout=2)
        assert time.monotonic() - started < 2


async def test_a_pointer_moved_back_to_an_older_version_is_followed() -> None:
    async with watching(a=5) as h:
        h.store.pointers["a"] = 3  # botify models rollback a 3
        assert await h.watcher.refresh("a")
        assert h.slots["a"].version == 3
        assert h.store.loads == [("a", 5), ("a", 3)]


async def test_a_rollback_announcement_of_an_older_version_is_followed_at_once() -> None:
    async with watching(a=5) as h:
        h.store.pointers["a"] = 3
        h.feed.emit("a", 3, rollback=True)
        await until(lambda: h.slots["a"].version == 3)


async def test_replayed_and_foreign_announcements_cost_no_pointer_read() -> None:
    async with watching(a=5) as h:
        reads = h.store.pointer_reads
        h.feed.emit("a", 3)  # replayed from the start of the topic
        h.feed.emit("a", 5)
        h.feed.emit("not_served_here", 9)
        h.store.pointers["b"] = 1
        h.feed.emit("b", 1)  # a marker: announcements are handled in order
        await until(lambda: h.slots["b"].version == 1)
        assert h.store.pointer_reads == reads + 1


async def test_a_version_that_fails_to_load_is_counted_skipped_and_not_retried() -> None:
    async with watching(poll_s=0.02, a=1) as h:
        h.store.broken.add(("a", 2))
        h.store.pointers["a"] = 2
        await until(lambda: h.sample("a", "botify_api_model_reload_failures_total") == 1)
        reads = h.store.pointer_reads
        await until(lambda: h.store.pointer_reads >= reads + 5)  # a few more polls
        assert h.slots["a"].version == 1  # the old version keeps serving
        assert h.store.loads.count(("a", 2)) == 1
        assert h.watcher.failed["a"] == {2}
        h.store.pointers["a"] = 3
        await until(lambda: h.slots["a"].version == 3)
        assert h.sample("a", "botify_api_model_reload_failures_total") == 1


async def test_a_passing_load_failure_is_retried_at_the_next_poll() -> None:
    async with watching(poll_s=0.02, a=1) as h:
        h.store.flaky[("a", 2)] = 1
        h.store.pointers["a"] = 2
        await until(lambda: h.slots["a"].version == 2)
        assert h.store.loads.count(("a", 2)) == 2
        assert h.sample("a", "botify_api_model_reload_failures_total") == 1
        assert h.watcher.failed["a"] == set()


async def test_an_unreadable_pointer_keeps_the_served_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with watching(poll_s=0.02, a=1) as h:
        h.store.down = True
        reads = h.store.pointer_reads
        await until(lambda: h.store.pointer_reads >= reads + 6)
        assert h.slots["a"].version == 1
        # Logged once per outage, not once per poll.
        assert sum("cannot read the pointer of model a" in r.message for r in caplog.records) == 1
        h.store.down = False
        h.store.pointers["a"] = 2
        await until(lambda: h.slots["a"].version == 2)


async def test_stop_cancels_the_background_work_and_stops_the_feed() -> None:
    h = harness(poll_s=0.01)
    await h.watcher.start()
    tasks = list(h.watcher._tasks)
    await h.watcher.stop()
    assert all(t.done() for t in tasks)
    assert h.feed.stopped
    reads = h.store.pointer_reads
    await asyncio.sleep(0.05)
    assert h.store.pointer_reads == reads


async def test_without_slots_the_watcher_starts_nothing() -> None:
    h = harness(names=())
    await h.watcher.start()
    await h.watcher.stop()
    assert h.feeds == [] and h.watcher._tasks == []


async def test_loads_run_one_at_a_time() -> None:
    h = harness()
    h.store.gate = threading.Event()
    h.store.pointers.update(a=1, b=1)
    starting = asyncio.create_task(h.watcher.start())
    await until(lambda: len(h.store.load_threads) == 1)
    await asyncio.sleep(0.05)
    assert len(h.store.load_threads) == 1  # b waits for a's load to finish
    h.store.gate.set()
    await starting
    try:
        assert h.slots["a"].version == h.slots["b"].version == 1
    finally:
        await h.watcher.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
async def test_loads_run_at_a_lower_cpu_priority_than_the_event_loop() -> None:
    h = harness()
    h.store.pointers["a"] = 1
    niceness: list[int] = []
    load = h.store.load

    def observed_load(name: str, version: int) -> ModelArtifact:
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return load(name, version)

    h.store.load = observed_load  # type: ignore[method-assign]
    await h.watcher.start()
    await h.watcher.stop()
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert len(niceness) == 1
    assert niceness[0] > loop_nice or loop_nice == 19  # 19: already the lowest


async def test_a_rollback_announcement_retries_a_version_that_failed_here_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with watching(poll_s=0.02, a=1) as h:
        h.store.broken.add(("a", 2))  # e.g. unreadable on this instance's volume for a while
        h.store.pointers["a"] = 2
        await until(lambda: h.watcher.failed["a"] == {2})
        reads = h.store.pointer_reads
        await until(lambda: h.store.pointer_reads >= reads + 5)  # a few more polls
        skipped = [r for r in caplog.records if "which failed to load here" in r.getMessage()]
        assert len(skipped) == 1  # said once, not at every poll
        h.store.pointers["a"] = 3
        await until(lambda: h.slots["a"].version == 3)
        h.store.broken.clear()
        h.store.pointers["a"] = 2  # botify models rollback a 2
        h.feed.emit("a", 2, rollback=True)
        await until(lambda: h.slots["a"].version == 2)
        assert h.watcher.failed["a"] == set()
        assert "a v2: failed to load before, trying it again" in caplog.text
