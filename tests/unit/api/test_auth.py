"""API keys: writes, metrics and docs need a key when keys are set; nothing changes without."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from botify.settings import ApiSettings, Settings
from tests.unit.api.conftest import ClientFactory, RecordingPublisher

pytestmark = pytest.mark.unit

BODY = {"track": 1, "time": 0.5}


@pytest.fixture
def keyed(
    make_client: ClientFactory, api_settings: Settings, publisher: RecordingPublisher
) -> tuple[TestClient, RecordingPublisher]:
    settings = api_settings.model_copy(
        update={"api": ApiSettings(api_keys=(SecretStr("k-old"), SecretStr("k-new")))}
    )
    return make_client(settings), publisher


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/next/1"),
        ("POST", "/last/1"),
        ("GET", "/metrics"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
    ],
)
def test_protected_paths_refuse_a_request_without_a_key(
    keyed: tuple[TestClient, RecordingPublisher], method: str, path: str
) -> None:
    client, publisher = keyed
    resp = client.request(method, path, json=BODY if method == "POST" else None)
    assert resp.status_code == 401
    assert resp.json()["error"] == "unauthorized"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert publisher.events == []


def test_a_wrong_key_is_refused_and_nothing_is_published(
    keyed: tuple[TestClient, RecordingPublisher],
) -> None:
    client, publisher = keyed
    for headers in (
        {"Authorization": "Bearer k-ol"},
        {"Authorization": "Basic k-old"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "k-new2"},
    ):
        assert client.post("/next/1", json=BODY, headers=headers).status_code == 401, headers
    assert publisher.events == []


def test_either_configured_key_is_accepted_in_either_header(
    keyed: tuple[TestClient, RecordingPublisher],
) -> None:
    client, publisher = keyed
    assert client.post("/next/1", json=BODY, headers={"Authorization": "Bearer k-old"}).is_success
    assert client.post("/next/1", json=BODY, headers={"authorization": "bearer k-new"}).is_success
    assert client.post("/last/1", json=BODY, headers={"X-API-Key": "k-new"}).is_success
    assert len(publisher.events) == 3
    assert client.get("/metrics", headers={"X-API-Key": "k-old"}).status_code == 200


def test_probes_and_catalog_reads_stay_open(keyed: tuple[TestClient, RecordingPublisher]) -> None:
    client, _ = keyed
    assert client.get("/").status_code == 200
    assert client.get("/track/1").status_code == 200
    # /health answers for itself (here 503: the fakes have no broker), never 401.
    assert client.get("/health").status_code != 401


def test_the_openapi_spec_names_the_scheme_on_protected_operations_only(
    keyed: tuple[TestClient, RecordingPublisher],
) -> None:
    client, _ = keyed
    spec = client.get("/openapi.json", headers={"X-API-Key": "k-old"}).json()
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/next/{user}"]["post"]["security"] == [{"apiKey": []}]
    assert "401" in spec["paths"]["/last/{user}"]["post"]["responses"]
    assert "security" not in spec["paths"]["/health"]["get"]


def test_without_keys_nothing_is_guarded(client: TestClient) -> None:
    assert client.post("/next/1", json=BODY).status_code == 200
    assert client.get("/metrics").status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


def test_keys_are_secrets_that_settings_never_print() -> None:
    settings = ApiSettings(api_keys=(SecretStr("hunter2"),))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()


def test_a_prefix_proxys_root_path_does_not_bypass_the_keys(
    keyed: tuple[TestClient, RecordingPublisher],
) -> None:
    client, publisher = keyed
    behind_proxy = TestClient(client.app, root_path="/api", raise_server_exceptions=False)
    for method, path in (("POST", "/api/next/1"), ("GET", "/api/metrics"), ("GET", "/api/docs")):
        resp = behind_proxy.request(method, path, json=BODY if method == "POST" else None)
        assert resp.status_code == 401, (path, resp.status_code)
    assert publisher.events == []
    ok = behind_proxy.post("/api/next/1", json=BODY, headers={"X-API-Key": "k-old"})
    assert ok.status_code == 200
