"""A registry with the process collectors, and a ``/metrics`` server for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import CollectorRegistry

from botify.errors import ConfigError

logger = logging.getLogger(__name__)


def process_registry() -> CollectorRegistry:
    """A new registry that already holds CPU seconds, RSS, open fds, start time (Linux),
    the Python version and the garbage collector's counts."""
    # `_created` series double every metric's cardinality and no dashboard reads them.
    disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def precreate(metric: MetricWrapperBase, label_sets: Iterable[Sequence[str]]) -> None:
    """Create the children whose labels are known at start, at zero: a series that appears
    only with its first increment has no step for ``rate()`` or ``increase()`` to see."""
    for labels in label_sets:
        metric.labels(*labels)


class MetricsServer:
    """Serves a registry on ``http://host:port/metrics`` from a daemon thread."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry, self.host, self.port = registry, host, port
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Start serving; returns the port (a free one when ``port`` is 0)."""
        try:
            self._server, self._thread = start_http_server(
                self.port, addr=self.host, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self.port = int(self._server.server_port)
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
