"""``python -m services.stream``: one stream worker (run several to share the partitions)."""

from __future__ import annotations

import sys

import faust

from botify.errors import BotifyError
from botify.experiments import load_experiments
from botify.kafka import ensure_topics
from botify.settings import Settings
from botify.telemetry import ConsumerLagMonitor, MetricsServer, process_registry
from services.stream.app import create_app
from services.stream.metrics import StreamMetrics


def main() -> None:
    settings = Settings()
    registry = process_registry()
    try:
        ensure_topics(settings.kafka)
        plan = load_experiments(settings.experiments.path, settings.experiments.default_recommender)
        metrics = StreamMetrics(registry, plan)
        server = MetricsServer(registry, settings.metrics.host, settings.metrics.stream_port)
        server.start()
    except BotifyError as exc:  # no broker, a bad file or a taken port: one line
        sys.exit(f"botify stream: {exc}")
    lag = ConsumerLagMonitor.for_group(
        settings.kafka,
        settings.stream.app_id,
        [settings.kafka.listens_topic],
        registry,
        settings.metrics.lag_interval_s,
    )
    lag.start()
    app = create_app(settings, metrics)
    worker = faust.Worker(app, loglevel="WARN", quiet=True)
    # faust's terminal spinner would lower the root logger to DEBUG (so every debug record
    # of faust and aiokafka is built, only to turn it) and write escape codes to our logs.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    finally:
        lag.stop()
        server.stop()


if __name__ == "__main__":
    main()
