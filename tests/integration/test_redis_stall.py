"""A Redis that stops answering (SIGSTOP: connections still open, nothing replies) under a
real API process: every request gets a 503 within the Redis timeout, never a hang, and the
API serves again once Redis resumes."""

from __future__ import annotations

import os
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest

from botify_cli.processes import free_port, redis_process
from tests.integration.api_process import api_process

pytestmark = [pytest.mark.slow]

TIMEOUT_S = 1.0
# The watchdog looks every tenth of the timeout; the rest is scheduling on a busy machine.
SLACK_S = 0.5


def test_a_stalled_redis_gives_503s_within_the_timeout_and_never_a_hang(
    tmp_path: Path, broker_url: str, unique_topic: str
) -> None:
    port = free_port()
    redis = redis_process(port, tmp_path / "redis").start()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        env = {"BOTIFY_REDIS__TIMEOUT_S": str(TIMEOUT_S)}
        with (
            api_process(tmp_path, broker_url, url, unique_topic, **env) as (api, _),
            httpx.Client(base_url=api, timeout=TIMEOUT_S * 10) as client,
        ):
            assert client.post("/next/1", json={"track": 1, "time": 1.0}).status_code == 200
            pid = redis.process.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            try:
                took = []
                for user in range(8):
                    started = time.monotonic()
                    path = "/next" if user % 2 == 0 else "/last"
                    resp = client.post(f"{path}/{user}", json={"track": 1, "time": 1.0})
                    took.append(time.monotonic() - started)
                    assert resp.status_code == 503, resp.text
                    body = resp.json()
                    assert body["error"] == "backend_timeout", body
                    assert "redis" in body["detail"]
                started = time.monotonic()
                health = client.get("/health")
                health_took = time.monotonic() - started
                assert health.status_code == 503 and not health.json()["redis"]["ok"]
            finally:
                os.kill(pid, signal.SIGCONT)
            print(
                f"\nredis stalled: 503 after median {statistics.median(took):.2f} s, "
                f"max {max(took):.2f} s (timeout {TIMEOUT_S} s); /health 503 after "
                f"{health_took:.2f} s"
            )
            assert max(took) <= TIMEOUT_S + SLACK_S
            assert health_took <= TIMEOUT_S + SLACK_S
            # Redis is back: so is the API.
            deadline = time.monotonic() + 10
            status = 0
            while status != 200 and time.monotonic() < deadline:
                status = client.post("/next/1", json={"track": 1, "time": 1.0}).status_code
                time.sleep(0.1)
            assert status == 200
    finally:
        redis.stop()
