"""``botify up``: starts everything, answers, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from botify_cli.processes import free_port
from botify_sim.client import BotifyClient, ProtocolError
from tests.integration.cli import running

pytestmark = pytest.mark.slow


def start_up(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Run ``botify up`` and read its output until it says it is up (60 s at most)."""
    env = {**os.environ, "BOTIFY_RUN_DIR": str(tmp_path), "COLUMNS": "200", **(env or {})}
    return running.start_up([sys.executable, "-m", "botify_cli", "up", *args], env)


def test_up_serves_then_stops_every_child_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc, out = start_up(tmp_path, "--api-port", str(port))
    try:
        assert "Press Ctrl-C" in out, out
        assert f"http://127.0.0.1:{port}" in out
        assert re.search(r"redis://127\.0\.0\.1:\d+", out)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # broker, redis, api, stream worker
        resp = httpx.post(f"http://127.0.0.1:{port}/next/5", json={"track": 1, "time": 1.0})
        assert resp.status_code == 200
        running.stop_leaving_no_orphans(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_up_runs_api_instances_behind_a_load_balancer(tmp_path: Path) -> None:
    port = free_port()
    proc, out = start_up(tmp_path, "--api-port", str(port), "--api-instances", "2", "--no-trainer")
    try:
        assert "Press Ctrl-C" in out, out
        instances = re.findall(r"api-\d\s*│\s*(http://127\.0\.0\.1:\d+)", out)
        assert len(instances) == 2, out
        assert "load balancer stats" in out
        served_by = set()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for i in range(6):
                resp = client.post("/next/5", json={"track": 1 + i, "time": 1.0})
                assert resp.status_code == 200, resp.text
                served_by.add(resp.headers["x-botify-instance"])
        assert served_by == {"api-1", "api-2"}
        for url in instances:  # each instance also answers on its own address
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        running.stop_leaving_no_orphans(proc)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_up_rejects_a_bad_port_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botify_cli", "up", "--api-port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    assert "api-port" in done.stderr + done.stdout


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Even SIGKILL, which the supervisor cannot catch, leaves no orphan: children ask the
    kernel for SIGTERM when their parent dies."""
    proc, out = start_up(tmp_path)
    try:
        assert "Press Ctrl-C" in out, out
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4
        proc.kill()
        proc.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus")
def test_up_with_prometheus_prints_every_endpoint_and_prometheus_scrapes_them_all(
    tmp_path: Path,
) -> None:
    # With API keys on, the API's /metrics needs one: Prometheus is given it.
    keyed = {"BOTIFY_API__API_KEYS": '["scrape-key"]'}
    proc, out = start_up(tmp_path, "--prometheus", "--stream-workers", "2", env=keyed)
    try:
        assert "Press Ctrl-C" in out, out
        urls = re.findall(r"metrics \((\S+)\)[\s│]+(http://127\.0\.0\.1:\d+/metrics)", out)
        assert {name for name, _ in urls} == {"api", "stream-1", "stream-2", "trainer"}, out
        key = {"Authorization": "Bearer scrape-key"}
        for _, url in urls:
            assert "process_resident_memory_bytes" in httpx.get(url, headers=key, timeout=10).text
        api_metrics = next(url for name, url in urls if name == "api")
        assert httpx.get(api_metrics, timeout=10).status_code == 401
        # The simulator's client sends the key; without one a write is refused.
        api = api_metrics.removesuffix("/metrics")
        with BotifyClient(api, api_key="scrape-key") as client:
            assert isinstance(client.next(5, 1, 0.5), int)
        with BotifyClient(api) as client, pytest.raises(ProtocolError, match="401"):
            client.next(5, 1, 0.5)
        prometheus = re.search(r"prometheus[\s│]+(http://127\.0\.0\.1:\d+)", out)
        assert prometheus, out
        deadline, up = time.monotonic() + 30, []
        while time.monotonic() < deadline and len(up) < len(urls):
            query = {"query": "up == 1"}
            body = httpx.get(f"{prometheus.group(1)}/api/v1/query", params=query).json()
            up = body["data"]["result"]
            time.sleep(0.5)
        assert {r["metric"]["service"] for r in up} == {name for name, _ in urls}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_up_prometheus_without_the_binary_is_a_one_line_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "botify_cli", "up", "--prometheus"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": str(tmp_path), "BOTIFY_RUN_DIR": str(tmp_path)},
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "apt-get install prometheus" in done.stderr
