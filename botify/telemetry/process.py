"""A registry with the process collectors, and a ``/metrics`` server for it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    make_wsgi_app,
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


class Heartbeat:
    """When a process's main loop last went round: ``/health`` says it is stalled after
    ``stall_s`` without a beat (a worker stuck retrying a dead backend, a hung round)."""

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s, self._clock = stall_s, clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return self._clock() - self._last

    def healthy(self) -> bool:
        return self.age() <= self.stall_s


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass  # a scrape every few seconds is not news


class MetricsServer:
    """Serves a registry on ``http://host:port/metrics`` from a daemon thread, and
    ``/health`` (200, or 503 once ``heartbeat`` has stalled) for probes."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.registry, self.host, self.port, self.heartbeat = registry, host, port, heartbeat
        self._server: WSGIServer | None = None
        self._metrics = make_wsgi_app(registry)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != "/health":
            return self._metrics(environ, start_response)
        beat = self.heartbeat
        ok = beat is None or beat.healthy()
        body: dict[str, object] = {"status": "ok" if ok else "stalled"}
        if beat is not None:
            body |= {"seconds_since_loop": round(beat.age(), 3), "stall_s": beat.stall_s}
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    def start(self) -> int:
        """Start serving; returns the port (a free one when ``port`` is 0)."""
        try:
            server = make_server(
                self.host, self.port, self._app, server_class=_Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        self._server = server
        self.port = int(server.server_port)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        logger.info("metrics on http://%s:%d/metrics", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
