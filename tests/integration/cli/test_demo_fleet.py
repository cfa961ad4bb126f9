"""``botify demo`` on a fleet: two API instances behind HAProxy and two stream workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_on_a_fleet_and_exports_every_request(tmp_path: Path) -> None:
    env = {**os.environ, "BOTIFY_RUN_DIR": str(tmp_path), "COLUMNS": "200"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botify_cli",
            "demo",
            "--api-instances",
            "2",
            "--stream-workers",
            "2",
            "--warmup",
            "0",
            "--episodes",
            "30",
            "--processes",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = tmp_path.glob("demo-*")
    logs = {p.name for p in (run / "logs").iterdir()}
    assert {"api-1.log", "api-2.log", "haproxy.cfg", "stream-1.log", "stream-2.log"} <= logs
    traffic = json.loads((run / "results.json").read_text())["traffic"]
    assert traffic["sessions"] == 30 and traffic["failed_sessions"] == 0
    # Both instances were stopped (and flushed) before the export: no request is missing.
    assert traffic["events_exported"] == traffic["requests"]
