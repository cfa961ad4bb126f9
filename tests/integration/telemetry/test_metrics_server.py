"""The /metrics and /health server of stream workers and the trainer, on loopback."""

from __future__ import annotations

import httpx
from prometheus_client import CollectorRegistry, Counter

from botify.telemetry import Heartbeat, MetricsServer
from tests.unit.telemetry.test_process import Clock


def test_the_server_answers_metrics_and_a_health_that_follows_the_heartbeat() -> None:
    registry = CollectorRegistry()
    Counter("botify_test_total", "doc", registry=registry).inc()
    clock = Clock()
    beat = Heartbeat(stall_s=10, clock=clock)
    server = MetricsServer(registry, "127.0.0.1", 0, beat)
    port = server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        assert "botify_test_total 1.0" in httpx.get(f"{base}/metrics", timeout=5).text
        ok = httpx.get(f"{base}/health", timeout=5)
        assert ok.status_code == 200 and ok.json()["status"] == "ok"
        clock.now += 11
        stalled = httpx.get(f"{base}/health", timeout=5)
        assert stalled.status_code == 503 and stalled.json()["seconds_since_loop"] == 11
    finally:
        server.stop()
