"""``EmbeddedStack.respawn`` starts a crashed child's process without waiting for it, and
``ready`` polls its health: the supervisor's tick is never held for a child's start timeout.
Real processes (a Python HTTP server that listens when told to) on free loopback ports."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from botify.errors import BackendUnavailableError
from botify.settings import Settings
from botify_cli.processes import free_port, http_child
from botify_cli.stack import EmbeddedStack

# Listens only once the gate file exists (bounded: 60 s), as an API instance loading its
# catalog and models is a while before it answers.
GATED_SERVER = """
import http.server, pathlib, sys, time
gate, deadline = pathlib.Path(sys.argv[2]), time.monotonic() + 60
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.05)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    stack = EmbeddedStack(Settings(), tmp_path)
    yield stack
    stack.stop()


def add_server(stack: EmbeddedStack, name: str, gate: Path, timeout: float) -> None:
    port = free_port()
    command = [sys.executable, "-c", GATED_SERVER, str(port), str(gate)]
    child = http_child(command, f"http://127.0.0.1:{port}/", stack.log_dir, name, timeout)
    stack.children.append((name, child))


def poll_ready(stack: EmbeddedStack, name: str, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if stack.ready(name):
            return True
        time.sleep(0.1)
    return False


def test_respawn_returns_at_once_and_ready_says_when_the_child_answers(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    gate = tmp_path / "listen"
    add_server(stack, "api", gate, timeout=60)
    stack.respawn("api")  # returned while the child cannot answer: it waits for the gate
    assert not stack.ready("api")
    gate.touch()
    assert poll_ready(stack, "api", within_s=30)
    assert stack.dead() == []


def test_a_child_that_exits_before_it_is_ready_is_reported_and_left_stopped(
    stack: EmbeddedStack,
) -> None:
    stack.children.append(
        (
            "api",
            http_child(
                [sys.executable, "-c", "raise SystemExit(3)"],
                "http://127.0.0.1:1/",
                stack.log_dir,
                "api",
                30,
            ),
        )
    )
    stack.respawn("api")
    with pytest.raises(BackendUnavailableError, match="api exited with code 3"):
        poll_ready(stack, "api", within_s=20)
    assert stack.dead() == ["api"]


def test_a_child_not_ready_within_its_start_timeout_is_stopped(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    add_server(stack, "api", tmp_path / "never", timeout=1.0)
    stack.respawn("api")
    with pytest.raises(BackendUnavailableError, match="within its start timeout"):
        poll_ready(stack, "api", within_s=20)
    assert stack.dead() == ["api"]


def test_a_child_whose_port_another_process_took_is_not_reported_restarted(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    gate = tmp_path / "listen"
    add_server(stack, "api", gate, timeout=30)
    child = stack.children[0][1]
    with socket.socket() as squatter:  # not our child, yet it answers on the child's port
        squatter.bind(("127.0.0.1", child.port))  # type: ignore[attr-defined]
        squatter.listen()
        with pytest.raises(BackendUnavailableError, match="port is taken"):
            stack.respawn("api")
    assert stack.dead() == ["api"]


# Accepts connections and never answers (bounded: 60 s).
MUTE_SERVER = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
held, deadline = [], time.monotonic() + 60
server.settimeout(0.1)
while time.monotonic() < deadline:
    try:
        held.append(server.accept()[0])
    except TimeoutError:
        pass
"""


def test_a_probe_of_a_child_that_accepts_but_never_answers_is_short(
    stack: EmbeddedStack,
) -> None:
    port = free_port()
    command = [sys.executable, "-c", MUTE_SERVER, str(port)]
    child = http_child(command, f"http://127.0.0.1:{port}/", stack.log_dir, "api", 60)
    stack.children.append(("api", child))
    stack.respawn("api")
    deadline = time.monotonic() + 20
    while not stack.dead() and child.pre_start_check() is False:  # listening yet?
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    assert not stack.ready("api")
    # About HEALTH_PROBE_TIMEOUT_S, not the 60 s start timeout left (a generous margin).
    assert time.monotonic() - started < 15
