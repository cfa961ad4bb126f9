"""``python -m services.stream``: one stream worker (run several to share the partitions)."""

from __future__ import annotations

import signal

# Before any other import: numpy's OpenBLAS starts its threads at import, and every thread
# must inherit this mask for the stop-signal thread of ``serve`` to receive SIGTERM at once.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})

import asyncio  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

from botify.errors import BotifyError  # noqa: E402
from botify.experiments import load_experiments  # noqa: E402
from botify.kafka import STREAM, ensure_topics  # noqa: E402
from botify.settings import Settings  # noqa: E402
from botify.telemetry import ConsumerLagMonitor, Heartbeat, MetricsServer, process_registry  # noqa: E402
from services.stream.app import serve, tune_collector  # noqa: E402
from services.stream.metrics import StreamMetrics  # noqa: E402


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    registry = process_registry()
    try:
        ensure_topics(settings.kafka, service=STREAM)
        plan = load_experiments(settings.experiments.path, settings.experiments.default_recommender)
        metrics = StreamMetrics(registry, plan)
        heartbeat = Heartbeat(settings.metrics.stall_s)
        server = MetricsServer(
            registry, settings.metrics.host, settings.metrics.stream_port, heartbeat
        )
        server.start()
    except BotifyError as exc:  # no broker, a bad file or a taken port: one line
        sys.exit(f"botify stream: {exc}")
    lag = ConsumerLagMonitor.for_group(
        settings.kafka,
        settings.stream.app_id,
        [settings.kafka.listens_topic],
        registry,
        settings.metrics.lag_interval_s,
        service=STREAM,
    )
    lag.start()
    tune_collector(settings.stream.gc_threshold)
    try:
        asyncio.run(serve(settings, metrics, heartbeat))
    except BotifyError as exc:  # a bad catalog: one line
        sys.exit(f"botify stream: {exc}")
    finally:
        lag.stop()
        server.stop()


if __name__ == "__main__":
    main()
