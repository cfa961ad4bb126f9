"""``botify up`` as a child process: started until it says it is up, stopped with SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import psutil


def start_up(
    command: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> tuple[subprocess.Popen[str], str]:
    """Run ``command`` (a ``botify up``) and read its output until it says it is up."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out, deadline = "", time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline and "Press Ctrl-C" not in out:
        line = proc.stdout.readline()
        if not line:
            break
        out += line
    return proc, out


def stop_leaving_no_orphans(proc: subprocess.Popen[str]) -> int:
    """SIGTERM ``botify up`` and check every child it started is gone; its exit code."""
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=60)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]
    return code
