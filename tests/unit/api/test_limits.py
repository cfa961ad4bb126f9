"""Body limits (services/api/limits.py) through the app, on in-memory fakes."""

from __future__ import annotations

from fastapi.testclient import TestClient

from botify.settings import ApiSettings
from services.api.server import protocol_for, server_config


def test_a_declared_body_over_the_bound_is_413_and_publishes_nothing(
    client: TestClient, publisher
) -> None:  # type: ignore[no-untyped-def]
    body = b'{"track": 1, "time": 0.5, "pad": "' + b"a" * 70_000 + b'"}'
    resp = client.post("/next/1", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"] == "body_too_large"
    assert publisher.events == []


def test_a_chunked_body_over_the_bound_is_413(client: TestClient) -> None:
    chunks = (b"x" * 8192 for _ in range(10))
    resp = client.post("/next/1", content=chunks, headers={"content-type": "application/json"})
    assert resp.status_code == 413


def test_a_body_within_the_bound_is_served(client: TestClient) -> None:
    body = b'{"track": 1, "time": 0.5, "pad": "' + b"a" * 60_000 + b'"}'
    resp = client.post("/next/1", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text


def test_the_server_takes_its_limits_from_the_settings() -> None:
    settings = ApiSettings(
        max_connections=10, backlog=20, keep_alive_s=3, header_timeout_s=4, max_header_bytes=2048
    )
    config = server_config(object(), settings)
    assert (config.limit_concurrency, config.backlog, config.timeout_keep_alive) == (10, 20, 3)
    protocol = protocol_for(settings)
    assert (protocol.header_timeout_s, protocol.max_header_bytes) == (4, 2048)
    # The sweeper keeps its own copy of the timeout: it must be the same one.
    assert protocol._deadlines.timeout_s == 4
