"""The "acks" durability mode: a 200 only once the broker has the event, else 503."""

from __future__ import annotations

from fastapi.testclient import TestClient

from botify.errors import BackendUnavailableError
from botify.settings import ApiSettings, Settings
from tests.unit.api.conftest import RecordingPublisher


def acks_mode(client: TestClient, settings: Settings) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.settings = settings.model_copy(update={"api": ApiSettings(durability="acks")})
    runtime.publisher.acked = True  # as create_app builds it for that mode


def test_acks_mode_answers_200_once_the_event_is_acknowledged(
    client: TestClient, api_settings: Settings, publisher: RecordingPublisher
) -> None:
    acks_mode(client, api_settings)
    assert client.post("/next/3", json={"track": 1, "time": 0.5}).status_code == 200
    assert client.post("/last/3", json={"track": 2, "time": 0.5}).status_code == 200
    assert [e.message for e in publisher.events] == ["next", "last"]


def test_acks_mode_answers_503_when_the_broker_does_not_acknowledge(
    client: TestClient, api_settings: Settings, publisher: RecordingPublisher
) -> None:
    acks_mode(client, api_settings)
    publisher.ack_error = BackendUnavailableError("the broker did not acknowledge the event")
    for path in ("/next/3", "/last/3"):
        resp = client.post(path, json={"track": 1, "time": 0.5})
        assert resp.status_code == 503, resp.text
        assert "acknowledge" in resp.text
    assert publisher.events == []
