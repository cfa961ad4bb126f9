"""The API app as ``create_app`` wires it, lifespan included, with in-memory backends: no
broker, no Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from botify.catalog import write_catalog
from botify.delivery import HEALTHY, DeliveryStatus
from botify.events import ListenEvent
from botify.settings import CatalogSettings, ExperimentsSettings, RedisSettings, Settings
from botify.storage import InMemoryUserStateStore
from services.api.app import Backends, create_app
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

    closed: bool = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def api_settings(tmp_path: Path) -> Settings:
    catalog = tmp_path / "catalog.jsonl"
    write_catalog(small_catalog(), catalog)
    experiments = tmp_path / "experiments.toml"
    experiments.write_text(EXPERIMENTS)
    return Settings(
        catalog=CatalogSettings(path=catalog),
        experiments=ExperimentsSettings(path=experiments),
        redis=RedisSettings(url="memory://"),
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def store() -> InMemoryUserStateStore:
    return InMemoryUserStateStore()


# Builds a client for these settings over the given fakes; the client is closed at teardown.
ClientFactory = Callable[[Settings], TestClient]


@pytest.fixture
def make_client(
    publisher: RecordingPublisher, store: InMemoryUserStateStore
) -> Iterator[ClientFactory]:
    clients: list[TestClient] = []

    def make(settings: Settings) -> TestClient:
        def open_publisher(settings: Settings, metrics: object) -> RecordingPublisher:
            # As the real publisher is built: for the "acks" mode or not.
            publisher.acked = settings.api.durability == "acks"
            return publisher

        backends = Backends(
            ensure_topics=lambda kafka: None,
            open_store=lambda settings: store,
            open_publisher=open_publisher,
        )
        client = TestClient(create_app(settings, backends), raise_server_exceptions=False)
        client.__enter__()  # runs the lifespan: metrics, runtime, refresher, model watcher
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)
    assert publisher.closed or not clients, "the lifespan closes what it opened"


@pytest.fixture
def client(make_client: ClientFactory, api_settings: Settings) -> TestClient:
    return make_client(api_settings)
