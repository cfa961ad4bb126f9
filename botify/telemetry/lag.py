"""A consumer group's lag per partition, refreshed off the hot path as a gauge.

Each process watches the group it consumes for: a stream worker the stream's group, the
trainer its examples group. Several workers of one group export the same figures under
their own ``instance``; dashboards take ``max by (group, topic, partition)``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from prometheus_client import Counter, Gauge
from prometheus_client.registry import CollectorRegistry

from botify.errors import BackendUnavailableError
from botify.kafka import ConsumerLagReader, PartitionLag
from botify.settings import KafkaSettings
from botify.telemetry.process import precreate

logger = logging.getLogger(__name__)


class LagSource(Protocol):
    def read(
        self, group: str, topics: Sequence[str], timeout: float = ...
    ) -> list[PartitionLag]: ...


class ConsumerLagMonitor:
    """Every ``interval_s``, reads ``group``'s lag on ``topics`` into
    ``botify_kafka_consumer_lag_records{group,topic,partition}``."""

    def __init__(
        self,
        source: LagSource,
        group: str,
        topics: Sequence[str],
        registry: CollectorRegistry,
        interval_s: float,
    ) -> None:
        self.source, self.group, self.topics, self.interval_s = source, group, topics, interval_s
        self.lag = Gauge(
            "botify_kafka_consumer_lag_records",
            "Records between a consumer group's committed offset and the partition's end.",
            ["group", "topic", "partition"],
            registry=registry,
        )
        self.read_errors = Counter(
            "botify_kafka_consumer_lag_read_errors_total",
            "Lag readings that failed (the broker did not answer).",
            ["group"],
            registry=registry,
        )
        precreate(self.read_errors, [(group,)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lag-{group}", daemon=True)

    @classmethod
    def for_group(
        cls,
        kafka: KafkaSettings,
        group: str,
        topics: Sequence[str],
        registry: CollectorRegistry,
        interval_s: float,
        *,
        service: str,
    ) -> ConsumerLagMonitor:
        """A monitor reading from the configured brokers with a client of its own, of
        ``service`` (its ``client.id``: ``<prefix>-<service>-lag``)."""
        reader = ConsumerLagReader(kafka, service=f"{service}-lag")
        return cls(reader, group, topics, registry, interval_s)

    def refresh(self) -> None:
        """One reading; a broker that does not answer is counted, not raised."""
        try:
            parts = self.source.read(self.group, self.topics)
        except BackendUnavailableError as exc:
            self.read_errors.labels(self.group).inc()
            logger.warning("consumer lag: %s", exc)
            return
        except Exception:  # a surprise must not end the thread and freeze the gauge
            self.read_errors.labels(self.group).inc()
            logger.exception("consumer lag of %s: unexpected failure", self.group)
            return
        for p in parts:
            self.lag.labels(self.group, p.topic, str(p.partition)).set(p.lag)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 6)
