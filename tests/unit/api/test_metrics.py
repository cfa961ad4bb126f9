"""The API's metrics: children at zero from the start, the first error visible, the served
version's data window, and the switch that turns the per-request metrics off."""

from __future__ import annotations

from fastapi.testclient import TestClient

from services.api.metrics import ERRORS, ROUTES, ApiMetrics
from tests.unit.api.test_model_watcher import harness


def sample(client: TestClient, name: str, **labels: str) -> float | None:
    metrics: ApiMetrics = client.app.state.metrics  # type: ignore[attr-defined]
    return metrics.registry.get_sample_value(name, labels)


def test_every_route_and_error_kind_is_exported_at_zero_before_any_request() -> None:
    m = ApiMetrics()
    for route in ROUTES:
        assert (
            m.registry.get_sample_value(
                "botify_api_requests_total", {"route": route, "status": "200"}
            )
            == 0.0
        )
        for _, kind in ERRORS:
            assert (
                m.registry.get_sample_value(
                    "botify_api_errors_total", {"route": route, "error": kind}
                )
                == 0.0
            )


def test_the_process_collectors_are_exported() -> None:
    m = ApiMetrics()
    assert m.registry.get_sample_value("process_resident_memory_bytes") is not None
    assert m.registry.get_sample_value("process_open_fds") is not None
    assert (
        m.registry.get_sample_value("python_gc_collections_total", {"generation": "0"}) is not None
    )


def test_the_first_errors_are_counted_from_zero(client: TestClient) -> None:
    route = "/next/{user}"
    assert sample(client, "botify_api_errors_total", route=route, error="malformed_json") == 0.0
    client.post("/next/1", content=b"{nope")
    client.post("/next/1", content=b"{nope")
    assert sample(client, "botify_api_errors_total", route=route, error="malformed_json") == 2.0
    assert sample(client, "botify_api_requests_total", route=route, status="400") == 2.0


def test_switched_off_per_request_metrics_count_no_answer(client: TestClient) -> None:
    client.app.state.metrics.per_request = False  # type: ignore[attr-defined]
    assert client.post("/next/1", json={"track": 1, "time": 0.5}).status_code == 200
    assert sample(client, "botify_api_requests_total", route="/next/{user}", status="200") == 0.0


async def test_the_served_version_and_its_data_window_end_are_exported() -> None:
    h = harness()
    h.store.pointers["a"] = 3
    assert (
        h.metrics.registry.get_sample_value(
            "botify_api_model_data_end_timestamp_seconds", {"model": "a"}
        )
        is None
    )
    await h.watcher.start()
    try:
        get = h.metrics.registry.get_sample_value
        assert get("botify_api_model_version", {"model": "a"}) == 3
        assert get("botify_api_model_data_end_timestamp_seconds", {"model": "a"}) == 3.0
        # A model with no version yet is exported at zero, not missing.
        assert get("botify_api_model_data_end_timestamp_seconds", {"model": "b"}) == 0.0
    finally:
        await h.watcher.stop()
