"""The "acks" durability mode: a 200 only once the broker has the event, else 503."""

from __future__ import annotations

from fastapi.testclient import TestClient

from botify.delivery import DeliveryStatus
from botify.errors import BackendUnavailableError
from botify.settings import ApiSettings, Settings
from botify.storage import InMemoryUserStateStore
from tests.unit.api.conftest import ClientFactory, RecordingPublisher


def acks_mode(make_client: ClientFactory, settings: Settings) -> TestClient:
    return make_client(settings.model_copy(update={"api": ApiSettings(durability="acks")}))


def test_acks_mode_answers_200_once_the_event_is_acknowledged(
    make_client: ClientFactory, api_settings: Settings, publisher: RecordingPublisher
) -> None:
    client = acks_mode(make_client, api_settings)
    assert client.post("/next/3", json={"track": 1, "time": 0.5}).status_code == 200
    assert client.post("/last/3", json={"track": 2, "time": 0.5}).status_code == 200
    assert [e.message for e in publisher.events] == ["next", "last"]


def test_acks_mode_answers_503_when_the_broker_does_not_acknowledge(
    make_client: ClientFactory, api_settings: Settings, publisher: RecordingPublisher
) -> None:
    client = acks_mode(make_client, api_settings)
    publisher.ack_error = BackendUnavailableError("the broker did not acknowledge the event")
    for path in ("/next/3", "/last/3"):
        resp = client.post(path, json={"track": 1, "time": 0.5})
        assert resp.status_code == 503, resp.text
        assert "acknowledge" in resp.text
    assert publisher.events == []


def stuck(publisher: RecordingPublisher) -> None:
    publisher.status = DeliveryStatus(
        ok=False, pending=7, pending_age_s=12.0, failed=0, failing=False, detail="waited 12 s"
    )


def test_next_and_last_refuse_with_503_while_events_are_not_delivered(
    client: TestClient, publisher: RecordingPublisher, store: InMemoryUserStateStore
) -> None:
    stuck(publisher)
    for path in ("/next/3", "/last/3"):
        resp = client.post(path, json={"track": 1, "time": 0.5})
        assert resp.status_code == 503, resp.text
        assert "not being delivered" in resp.json()["detail"]
    # Refused before any side effect.
    assert publisher.events == [] and not store._sessions
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["delivery"]["pending_age_s"] == 12.0


def test_the_accept_policy_serves_while_events_are_not_delivered(
    make_client: ClientFactory, api_settings: Settings, publisher: RecordingPublisher
) -> None:
    client = make_client(
        api_settings.model_copy(update={"api": ApiSettings(on_delivery_failure="accept")})
    )
    stuck(publisher)
    assert client.post("/next/3", json={"track": 1, "time": 0.5}).status_code == 200
    assert client.get("/health").status_code == 503
