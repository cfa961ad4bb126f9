from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from botify.errors import (
    ArtifactError,
    BackendTimeoutError,
    BackendUnavailableError,
    BotifyError,
    ConfigError,
    InvalidEventError,
    UnknownTrackError,
)
from services.api.errors import STATUS_BY_ERROR, status_for
from tests.unit.api.conftest import RecordingPublisher


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        ("/next/1", b'{"track": 1', 400, "malformed_json"),
        ("/next/1", b"not json", 400, "malformed_json"),
        ("/next/1", b'{"track": 1}', 422, "invalid_request"),
        ("/next/1", b'{"time": 0.5}', 422, "invalid_request"),
        ("/next/1", b"[]", 422, "invalid_request"),
        ("/next/1", b'{"track": -1, "time": 0.5}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": 1.5}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": -0.1}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": NaN}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": "x"}', 422, "invalid_request"),
        ("/next/1", b'{"track": 99999999999999, "time": 0.5}', 422, "invalid_request"),
        ("/next/1", b'{"track": 5000, "time": 0.5}', 404, "unknown_track"),
        ("/last/1", b'{"track": 5000, "time": 0.5}', 404, "unknown_track"),
        ("/next/-3", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        ("/next/99999999999", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        # Ten digits pass the pattern: the range check alone refuses this one.
        (f"/next/{2**31}", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        ("/next/abc", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        # Strict wire types: no coercion from booleans or strings.
        ("/next/1", b'{"track": 1, "time": false}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": true}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1, "time": "0.5"}', 422, "invalid_request"),
        ("/next/1", b'{"track": "1", "time": 0.5}', 422, "invalid_request"),
        ("/next/1", b'{"track": true, "time": 0.5}', 422, "invalid_request"),
        ("/next/1", b'{"track": 1.5, "time": 0.5}', 422, "invalid_request"),
        ("/next/+5", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        ("/next/1_000", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        ("/last/%205", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
        ("/next/5.0", b'{"track": 1, "time": 0.5}', 422, "invalid_request"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    client: TestClient, path: str, body: bytes, status: int, code: str
) -> None:
    resp = client.post(path, content=body, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == code
    assert resp.json()["detail"]


def test_unknown_track_lookup_is_404(client: TestClient) -> None:
    resp = client.get("/track/12345")
    assert resp.status_code == 404 and resp.json()["error"] == "unknown_track"


def test_unknown_route_is_404_in_the_same_shape(client: TestClient) -> None:
    resp = client.get("/nope")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


def test_bad_requests_publish_nothing(client: TestClient, publisher: RecordingPublisher) -> None:
    assert client.post("/next/1", json={"track": 5000, "time": 0.5}).status_code == 404
    assert client.post("/next/1", json={"track": 1, "time": 2}).status_code == 422
    assert publisher.events == []


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (UnknownTrackError(1), 404),
        (InvalidEventError("x"), 422),
        (BackendUnavailableError("x"), 503),
        # A subclass takes its nearest mapped ancestor's status.
        (BackendTimeoutError("x"), 503),
        # A configuration or artifact error is ours, not the client's: a 500.
        (ConfigError("x"), 500),
        (ArtifactError("x"), 500),
        (BotifyError("unmapped"), 500),
    ],
)
def test_each_domain_error_gets_its_status(error: BotifyError, status: int) -> None:
    assert status_for(error) == status


def test_the_status_table_holds_only_client_and_availability_statuses() -> None:
    assert set(STATUS_BY_ERROR.values()) <= {400, 404, 409, 422, 503}


def test_the_originals_requests_are_still_accepted(client: TestClient) -> None:
    # An integer time (JSON has one number type), leading zeros in a path id (Flask's
    # `<int:user>` took them) and extra fields, as clients of the original sent them.
    # A track sent as 1.0 is an integer to JSON Schema, and so to the API.
    bodies = ({"track": 1, "time": 1}, {"track": 1.0, "time": 0.35, "extra": "x"})
    for body in bodies:
        resp = client.post("/next/007", json=body)
        assert resp.status_code == 200, resp.text
        assert resp.json()["user"] == 7
    assert client.post("/last/7", json={"track": 1, "time": 0}).json() == {"user": 7}


@pytest.mark.parametrize("track", ["+1", "1_0", "-1", "x", "99999999999", str(2**31)])
def test_a_track_path_that_is_not_plain_digits_in_range_is_422(
    client: TestClient, track: str
) -> None:
    resp = client.get(f"/track/{track}")
    assert resp.status_code == 422 and resp.json()["error"] == "invalid_request"
    assert "track" in str(resp.json()["detail"])


def test_405_says_which_methods_are_allowed(client: TestClient) -> None:
    resp = client.get("/next/1")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert resp.json()["error"] == "method_not_allowed"
