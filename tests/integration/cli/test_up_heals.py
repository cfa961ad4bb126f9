"""``botify up`` heals: a crashed service is restarted and the rest keep serving; a dead
backend stops everything quickly with one message."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from botify_cli.processes import free_port
from tests.integration.cli import running
from tests.integration.stream.harness import wait_for, wait_until_redis_matches_the_fold

pytestmark = pytest.mark.slow


def start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "BOTIFY_RUN_DIR": str(tmp_path),
        "COLUMNS": "200",
        "BOTIFY_EMBEDDED__RESTART_BACKOFF_S": "0.5",
        # Every 200 is in the topic: the replay below must hold even across the API's
        # SIGKILL (in the default buffer mode that loses the last milliseconds of events).
        "BOTIFY_API__DURABILITY": "acks",
    }
    return running.start_up([sys.executable, "-m", "botify_cli", "up", *args], env)


def living(proc: subprocess.Popen[str], marker: str) -> list[psutil.Process]:
    """The living children of ``botify up`` whose command line contains ``marker``."""
    found = []
    for p in psutil.Process(proc.pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any(marker in a for a in p.cmdline()):
                found.append(p)
        except psutil.Error:  # gone meanwhile
            continue
    return found


def child(proc: subprocess.Popen[str], marker: str) -> psutil.Process:
    """The one living child of ``botify up`` whose command line contains ``marker``."""
    found = living(proc, marker)
    assert len(found) == 1, [p.cmdline() for p in found]
    return found[0]


def replaced(proc: subprocess.Popen[str], marker: str, old: psutil.Process) -> bool:
    return [p.pid for p in living(proc, marker)] not in ([], [old.pid])


def send_listens(api: str, users: range, tracks: range) -> int:
    """One /next per (user, track); the number of 200s."""
    ok = 0
    with httpx.Client(base_url=api, timeout=10) as client:
        for track in tracks:
            for user in users:
                resp = client.post(f"/next/{user}", json={"track": track, "time": 0.7})
                assert resp.status_code == 200, resp.text
                ok += 1
    return ok


def test_a_killed_stream_worker_and_api_come_back_and_state_equals_a_replay(
    tmp_path: Path,
) -> None:
    port = free_port()
    proc, out = start_up(tmp_path, "--api-port", str(port), "--no-trainer")
    api = f"http://127.0.0.1:{port}"
    try:
        assert "Press Ctrl-C" in out, out
        broker = re.search(r"broker[\s│]+(127\.0\.0\.1:\d+)", out)
        redis_url = re.search(r"(redis://127\.0\.0\.1:\d+/0)", out)
        assert broker and redis_url, out
        sent = send_listens(api, range(1, 41), range(1, 6))

        worker = child(proc, "services.stream")
        worker.kill()
        sent += send_listens(api, range(1, 41), range(6, 11))  # the API is unaffected
        wait_for(lambda: replaced(proc, "services.stream", worker), 30, "a new stream worker")

        server = child(proc, "services.api")
        server.kill()
        wait_for(lambda: replaced(proc, "services.api", server), 30, "a new API")
        wait_for(lambda: _healthy(api), 30, "the API to come back")
        sent += send_listens(api, range(1, 41), range(11, 16))

        r = redis.Redis.from_url(redis_url.group(1))
        states = asyncio.run(
            wait_until_redis_matches_the_fold(
                r, broker.group(1), "botify.listens.v1", sent, timeout=60
            )
        )
        assert len(states) == 40
        assert all(len(s.history) == 15 for s in states.values())
        running.stop_leaving_no_orphans(proc)
        rest = proc.stdout.read() if proc.stdout else ""
        assert re.search(r"stream-1 exited with code -9; restarting it in 0\.5 s", rest), rest
        assert "stream-1 restarted (restart 1)" in rest
        assert "api restarted (restart 1)" in rest
    finally:
        if proc.poll() is None:
            proc.kill()


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_dead_broker_stops_the_whole_stack_quickly_with_one_message(tmp_path: Path) -> None:
    proc, out = start_up(tmp_path, "--no-trainer")
    try:
        assert "Press Ctrl-C" in out, out
        children = psutil.Process(proc.pid).children(recursive=True)
        broker = child(proc, "broker")
        started = time.monotonic()
        broker.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        took = time.monotonic() - started
        rest = proc.stdout.read() if proc.stdout else ""
        assert code == 1
        assert "broker exited with code -9" in rest, rest
        assert "in memory only" in rest
        assert "Traceback" not in rest
        # The stop grace (5 s) plus one supervisor tick; before, teardown took about 38 s.
        assert took < 15, took
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
