"""Keeps the API's model slots on the current version of each model, off the request path.

On start every slot gets the version its pointer names. Then two triggers ask for a refresh:
announcements (immediate; read by a consumer thread) and a poll of the pointers every
``models.poll_s`` (the safety net for a lost announcement or an unreachable broker). A refresh
reads the pointer, loads the version it names if that is not the one served, in a
low-priority worker thread (one load at a time), and swaps it in with one assignment on the
event loop. The pointer is followed both ways: forward when the trainer publishes, back when
``botify models rollback`` moves it. A version that fails to load is counted, logged and
skipped: the old one keeps serving; a rollback announcement naming it lets it be tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from botify.artifacts import ModelArtifact, ModelSlot
from botify.errors import ArtifactError
from botify.model_store import Announcement, AnnouncementFeed, ModelStore
from botify.settings import Settings
from botify.storage.connection import async_redis
from services.api.metrics import ApiMetrics

logger = logging.getLogger(__name__)

# Added to the loading thread's nice value: when cores are short, the event loop serving
# requests runs first and the load waits (Linux schedules threads one by one).
LOAD_NICENESS = 10
# Loads of one version that fail for a reason other than a bad artifact, before giving up
# on it (the next version is then the way out).
MAX_LOAD_ATTEMPTS = 3


def _lower_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # elsewhere than Linux: no effect
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + LOAD_NICENESS))


class VersionSource(Protocol):
    """What the watcher needs of a ``ModelStore``."""

    async def current(self, name: str) -> int | None: ...

    def load(self, name: str, version: int) -> ModelArtifact: ...


class Feed(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


FeedFactory = Callable[[Callable[[Announcement], None]], Feed]


class ModelWatcher:
    def __init__(
        self,
        store: VersionSource,
        slots: Mapping[str, ModelSlot],
        settings: Settings,
        metrics: ApiMetrics,
        feed_factory: FeedFactory | None = None,
        prepare: Callable[[ModelArtifact], object] | None = None,
    ) -> None:
        self.store = store
        # Run on each loaded version in the loader thread, before the swap: whatever the
        # recommenders would otherwise build on the first request (their serving index).
        self._prepare = prepare
        self.slots = dict(slots)
        self._settings = settings
        self._metrics = metrics
        self._feed_factory = feed_factory or self._kafka_feed
        self._feed: Feed | None = None
        self._locks = {name: asyncio.Lock() for name in self.slots}
        # Versions that failed to load for good: the next version is the way out.
        self.failed: dict[str, set[int]] = {name: set() for name in self.slots}
        self._attempts: dict[tuple[str, int], int] = {}
        # Failed versions the pointer named, whose skipping was logged.
        self._skip_logged: set[tuple[str, int]] = set()
        self._pointer_down: set[str] = set()
        self._announced: asyncio.Queue[Announcement] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: list[Callable[[], object]] = []
        # One low-priority thread: loads never run on the loop, nor two at once.
        self._loader = ThreadPoolExecutor(1, "model-load", initializer=_lower_priority)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        slots: Mapping[str, ModelSlot],
        metrics: ApiMetrics,
        prepare: Callable[[ModelArtifact], object] | None = None,
    ) -> ModelWatcher:
        """A watcher over the configured models directory and Redis pointers; it closes its
        Redis client on ``stop``."""
        memory = settings.redis.url.startswith("memory://")
        client = None if memory else async_redis(settings.redis)
        watcher = cls(
            ModelStore.from_settings(settings, client), slots, settings, metrics, prepare=prepare
        )
        if client is not None:
            watcher._closers.append(client.aclose)
        return watcher

    def _kafka_feed(self, on_announcement: Callable[[Announcement], None]) -> Feed:
        return AnnouncementFeed(
            self._settings.kafka, self._settings.models.announce_topic, on_announcement
        )

    async def start(self) -> None:
        """Load every slot's current version, then watch for new ones in the background."""
        if not self.slots:
            return
        self._loop = asyncio.get_running_loop()
        self._metrics.models(self.slots)
        for name in self.slots:
            self._metrics.model_version.labels(name).set(self.slots[name].version or 0)
        self._feed = self._feed_factory(self._on_announcement)
        self._feed.start()
        await asyncio.gather(*(self.refresh(name) for name in self.slots))
        self._tasks = [
            asyncio.create_task(self._poll(), name="model-poll"),
            asyncio.create_task(self._follow_announcements(), name="model-announcements"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._feed is not None:
            await asyncio.to_thread(self._feed.stop)
            self._feed = None
        self._loader.shutdown(wait=False, cancel_futures=True)
        for close in self._closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
        self._closers = []

    def _on_announcement(self, announcement: Announcement) -> None:
        # Called from the feed's thread: hand over to the loop.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._announced.put_nowait, announcement)

    async def _follow_announcements(self) -> None:
        while True:
            announcement = await self._announced.get()
            slot = self.slots.get(announcement.model)
            # Another model, or a replayed announcement (the feed reads from the start).
            # A rollback's version is older than the served one: the pointer decides.
            if slot is None or slot.version == announcement.version:
                continue
            if (slot.version or 0) > announcement.version and not announcement.rollback:
                continue
            if announcement.rollback:
                # ``botify models rollback`` loaded it in full before moving the pointer: a
                # failure here may have been this instance's (a full disk, a volume's hiccup).
                self.forget_failure(announcement.model, announcement.version)
            await self.refresh(announcement.model)

    def forget_failure(self, name: str, version: int) -> None:
        """Let ``version`` of ``name`` be loaded again, though it failed before."""
        if version in self.failed.get(name, ()):
            logger.warning("model %s v%d: failed to load before, trying it again", name, version)
            self.failed[name].discard(version)
        self._attempts.pop((name, version), None)
        self._skip_logged.discard((name, version))

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._settings.models.poll_s)
            for name in self.slots:
                await self.refresh(name)

    def _load(self, name: str, version: int) -> ModelArtifact:
        artifact = self.store.load(name, version)
        if self._prepare is not None:
            problems = getattr(self._prepare(artifact), "problems", ())
            if problems:
                raise ArtifactError(f"{name} v{version} cannot be served: {'; '.join(problems)}")
        return artifact

    async def refresh(self, name: str) -> bool:
        """Swap in the version ``name``'s pointer names if it is not the served one (older
        too: a rollback) and has not failed before; True if the slot changed."""
        slot = self.slots[name]
        async with self._locks[name]:
            try:
                target = await self.store.current(name)
            except Exception as exc:  # Redis down or a bad pointer: keep serving what we have
                if name not in self._pointer_down:
                    self._pointer_down.add(name)
                    logger.warning("cannot read the pointer of model %s: %s", name, exc)
                return False
            if name in self._pointer_down:
                self._pointer_down.discard(name)
                logger.info("the pointer of model %s is readable again", name)
            served = slot.version
            if target is None or target == served:
                return False
            if target in self.failed[name]:
                if (name, target) not in self._skip_logged:  # once, not at every poll
                    self._skip_logged.add((name, target))
                    logger.error(
                        "model %s: the pointer names v%d, which failed to load here: still"
                        " serving v%s (a rollback announcement of v%d tries it again)",
                        name,
                        target,
                        served,
                        target,
                    )
                return False
            started = time.perf_counter()
            try:
                artifact = await asyncio.get_running_loop().run_in_executor(
                    self._loader, self._load, name, target
                )
            except Exception as exc:
                # A bad artifact stays bad; anything else (a full disk, a shared volume's
                # hiccup) is retried at the next poll, up to a few times.
                attempts = self._attempts.get((name, target), 0) + 1
                self._attempts[(name, target)] = attempts
                if isinstance(exc, ArtifactError) or attempts >= MAX_LOAD_ATTEMPTS:
                    self.failed[name].add(target)
                self._metrics.model_reload_failures.labels(name).inc()
                logger.error(
                    "model %s v%d failed to load, still serving v%s: %s", name, target, served, exc
                )
                return False
            slot.artifact = artifact  # the swap: one assignment, on the loop
            elapsed = time.perf_counter() - started
            self._metrics.model_reloads.labels(name).inc()
            self._metrics.model_reload_duration.labels(name).observe(elapsed)
            self._metrics.model_version.labels(name).set(artifact.version)
            self._metrics.model_data_end.labels(name).set(artifact.meta.window.last_ms / 1000.0)
            logger.info("model %s: now serving v%d (loaded in %.3fs)", name, target, elapsed)
            return True
