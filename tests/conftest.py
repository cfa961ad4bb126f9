"""Shared fixtures. Tests under tests/unit are marked ``unit``, under tests/integration
``integration``; the integration fixtures start one real Tansu broker and one real Redis per
test session, on free loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if (ROOT / "unit") in path.parents:
            item.add_marker(pytest.mark.unit)
        elif (ROOT / "integration") in path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from botify_cli.processes import broker_process, free_port

    port = free_port()
    proc = broker_process(port, log_dir=tmp_path_factory.mktemp("broker")).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from botify_cli.processes import free_port, redis_process

    port = free_port()
    proc = redis_process(port, log_dir=tmp_path_factory.mktemp("redis")).start()
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture
def unique_topic() -> str:
    """A fresh topic name, so tests sharing the session broker do not see each other's records."""
    return f"botify.test.{uuid.uuid4().hex[:12]}.v1"
