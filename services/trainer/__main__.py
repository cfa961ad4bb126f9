"""``python -m services.trainer``: reads the examples topic, retrains, publishes versions.

Thin wiring: settings, the Kafka consumer, the example log, Redis and the model store; the
schedule and the promotion rule live in ``services.trainer.loop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from botify.catalog import load_catalog
from botify.errors import BotifyError
from botify.example_log import ExampleConsumer, ExampleLog
from botify.kafka import TRAINER, ensure_topics
from botify.model_store import ModelAnnouncer, ModelStore
from botify.models import check_sections, load_plugins, trained_models
from botify.retraining import due
from botify.settings import Settings, TrainerSettings
from botify.storage.connection import async_redis
from botify.telemetry import ConsumerLagMonitor, Heartbeat, MetricsServer, process_registry
from services.trainer.loop import Trainer
from services.trainer.metrics import TrainerMetrics
from services.trainer.models import model_spec
from services.trainer.train import configure_torch

logger = logging.getLogger("services.trainer")


def drain(consumer: ExampleConsumer, log: ExampleLog, records: int, wait_s: float) -> int:
    """Read what the topic holds now into the log, in polls of ``records``: a round must
    train on everything that arrived while the previous one ran. Bounded: it stops at the
    first short poll, or after a hundred polls so a flood cannot starve the rounds."""
    taken = 0
    for _ in range(100):
        batch = consumer.poll_batch(records, wait_s)
        taken += log.append(batch)
        if len(batch) < records:
            break
    return taken


class ExampleFeed:
    """Between rounds: drains the topic into the log and says when a round is due. The
    consumer commits only right after the log has flushed, so committed offsets never run
    ahead of the examples on disk; what is only buffered is read again after a crash and
    deduplicated."""

    def __init__(
        self,
        consumer: ExampleConsumer,
        log: ExampleLog,
        cfg: TrainerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer, self.log, self.cfg, self.clock = consumer, log, cfg, clock
        self.last_run = self.last_flush = clock()
        self.fresh = 0  # examples taken since the last round
        self.taken = 0  # examples that triggered the round just due
        self.read = 0  # examples taken in all

    def poll(self) -> bool:
        """One drain; True when a round should run now (``botify.retraining.due``)."""
        cfg = self.cfg
        taken = drain(self.consumer, self.log, cfg.poll_records, cfg.poll_s)
        self.fresh += taken
        self.read += taken
        now = self.clock()
        if not due(self.last_run, now, self.fresh, cfg.every_s, cfg.every_examples):
            return False
        # Parts of a useful size (the log's bound counts parts), written before the offsets
        # move past them.
        if self.log.buffered() >= cfg.flush_rows or now - self.last_flush >= cfg.flush_s:
            self.log.flush()
            self.consumer.commit()
            self.last_flush = now
        self.last_run, self.taken, self.fresh = now, self.fresh, 0
        return True


async def _retrying(
    what: str, step: Callable[[], Awaitable[None]], stopping: asyncio.Event, cfg: TrainerSettings
) -> None:
    while not stopping.is_set():
        try:
            await step()
            return
        except (BotifyError, RedisError, OSError) as exc:
            logger.error("%s failed, retrying in %.0f s: %r", what, cfg.retry_s, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), cfg.retry_s)


def check_models(settings: Settings) -> tuple[str, ...]:
    """The models this trainer trains, once the plugins are loaded, every hyper-parameter
    section is valid, and each model is registered with a torch half that imports: a
    ``ConfigError`` stops the start instead of failing every round."""
    load_plugins(settings.models.plugins)
    check_sections(settings.trainer)
    models = trained_models(settings.trainer)
    for name in models:
        model_spec(name)
    return models


async def serve(
    settings: Settings,
    metrics: TrainerMetrics | None = None,
    heartbeat: Heartbeat | None = None,
) -> None:
    cfg = settings.trainer
    models = check_models(settings)
    catalog = load_catalog(settings.catalog.path)
    configure_torch(cfg)
    redis = async_redis(settings.redis)
    announcer = ModelAnnouncer(settings.kafka, settings.models.announce_topic, TRAINER)
    store = ModelStore.from_settings(settings, redis, announcer)
    log = ExampleLog.from_settings(settings.training_data, settings.run_dir)
    consumer = ExampleConsumer(settings.kafka, settings.training_data.consumer_group)
    trainer = Trainer(cfg, catalog, log, store, settings.run_dir / "trainer", observer=metrics)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await _retrying("restoring the served versions", trainer.restore, stopping, cfg)
        logger.warning("botify trainer ready: models %s", ", ".join(models))
        feed = ExampleFeed(consumer, log, cfg)
        while not stopping.is_set():
            if heartbeat is not None:
                heartbeat.beat()
            try:
                read = feed.read
                due_now = await asyncio.to_thread(feed.poll)
                if metrics is not None:
                    metrics.examples_read.inc(feed.read - read)
                if not due_now:
                    continue
                if metrics is not None:  # stats every part on disk: once a round, not a poll
                    metrics.example_log(*await asyncio.to_thread(log.stored), log.buffered())
                await trainer.run_all(stopping.is_set, feed.taken)
            except (BotifyError, RedisError, OSError) as exc:
                # A broker or Redis blip must not end the trainer: the API would keep
                # serving ageing models with nothing to show for it.
                logger.error("trainer round failed, retrying in %.0f s: %r", cfg.retry_s, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), cfg.retry_s)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(log.flush)
        consumer.close()
        announcer.close()
        await redis.aclose()


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    registry = process_registry()
    try:
        models = check_models(settings)
    except BotifyError as exc:  # a typo'd model, a broken plugin: one line, no traceback
        sys.exit(f"botify trainer: {exc}")
    metrics = TrainerMetrics(registry, models)
    heartbeat = Heartbeat(settings.metrics.stall_s)
    server = MetricsServer(
        registry, settings.metrics.host, settings.metrics.trainer_port, heartbeat
    )
    lag = ConsumerLagMonitor.for_group(
        settings.kafka,
        settings.training_data.consumer_group,
        [settings.kafka.examples_topic],
        registry,
        settings.metrics.lag_interval_s,
        service=TRAINER,
    )
    try:
        ensure_topics(settings.kafka, service=TRAINER)
        server.start()
        lag.start()
        asyncio.run(serve(settings, metrics, heartbeat))
    except BotifyError as exc:  # no broker, bad catalog, a taken port: one line, no traceback
        sys.exit(f"botify trainer: {exc}")
    finally:
        lag.stop()
        server.stop()


if __name__ == "__main__":
    main()
