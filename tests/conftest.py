"""Shared fixtures. Tests under tests/unit are marked ``unit``, under tests/integration
``integration``; the integration fixtures start one real Tansu broker and one real Redis per
test session, on free loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from botify_cli.processes import TCPChild

ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if (ROOT / "unit") in path.parents:
            item.add_marker(pytest.mark.unit)
        elif (ROOT / "integration") in path.parents:
            item.add_marker(pytest.mark.integration)


@contextmanager
def _child_on_free_port(
    start: Callable[..., TCPChild], tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[int]:
    """``start``'s child on a free loopback port, logging under a temporary ``name``
    directory; stopped when the block ends."""
    from botify_cli.processes import free_port

    port = free_port()
    proc = start(port, log_dir=tmp_path_factory.mktemp(name)).start()
    try:
        yield port
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from botify_cli.processes import broker_process

    with _child_on_free_port(broker_process, tmp_path_factory, "broker") as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from botify_cli.processes import redis_process

    with _child_on_free_port(redis_process, tmp_path_factory, "redis") as port:
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def unique_topic() -> str:
    """A fresh topic name, so tests sharing the session broker do not see each other's records."""
    return f"botify.test.{uuid.uuid4().hex[:12]}.v1"
