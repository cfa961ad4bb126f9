"""An API app wired to in-memory fakes: no broker, no Redis, no lifespan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from botify.catalog import write_catalog
from botify.delivery import HEALTHY, DeliveryStatus
from botify.events import ListenEvent
from botify.settings import CatalogSettings, ExperimentsSettings, Settings
from botify.storage import InMemoryUserStateStore
from services.api.app import build_router, create_app
from services.api.deps import Runtime
from services.api.metrics import ApiMetrics
from tests.factories import small_catalog

EXPERIMENTS = """
[[experiment]]
name = "AA"
groups = 2

[[experiment]]
name = "RECOMMENDERS"
groups = 3
arms = { C = "random", T1 = "sticky_artist", T2 = "top_pop" }
"""


@dataclass
class RecordingPublisher:
    events: list[ListenEvent] = field(default_factory=list)

    # Built for the "acks" mode, and its answer there: None (acknowledged) or the error the
    # broker's silence raises.
    acked: bool = False
    ack_error: Exception | None = None

    def publish(self, event: ListenEvent) -> None:
        self.events.append(event)

    async def publish_acked(self, event: ListenEvent, timeout: float) -> None:
        assert self.acked, "publish_acked on a publisher not built for the acks mode"
        if self.ack_error is not None:
            raise self.ack_error
        self.events.append(event)

    # What the poll thread of the real publisher samples.
    status: DeliveryStatus = HEALTHY

    def pending(self) -> int:
        return 0


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "catalog.jsonl"
    write_catalog(small_catalog(), catalog)
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENTS)
    return Settings(
        catalog=CatalogSettings(path=catalog), experiments=ExperimentsSettings(path=experiments)
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def store() -> InMemoryUserStateStore:
    return InMemoryUserStateStore()


@pytest.fixture
def client(
    api_settings: Settings, publisher: RecordingPublisher, store: InMemoryUserStateStore
) -> Iterator[TestClient]:
    app = create_app(api_settings)
    router, _ = build_router(api_settings)
    metrics = ApiMetrics()
    app.state.metrics = metrics
    app.state.runtime = Runtime(api_settings, router, store, publisher, metrics)  # type: ignore[arg-type]
    # No `with`: the lifespan (broker, Redis) does not run; the fakes above stand in.
    yield TestClient(app, raise_server_exceptions=False)
