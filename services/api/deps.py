"""What handlers need, as ``Annotated`` dependencies that tests can override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from botify.delivery import DeliveryStatus
from botify.events import ListenEvent
from botify.serving import Router
from botify.settings import Settings
from botify.storage import UserStateStore
from services.api.metrics import ApiMetrics


class EventPublisher(Protocol):
    """Where the handlers send listen events (``botify.kafka.ListenPublisher``)."""

    @property
    def acked(self) -> bool:
        """Built for the "acks" durability mode: handlers await ``publish_acked``."""

    @property
    def status(self) -> DeliveryStatus:
        """Whether events are being delivered."""

    def publish(self, event: ListenEvent) -> None: ...

    async def publish_acked(self, event: ListenEvent, timeout: float) -> None: ...

    def close(self) -> None: ...


@dataclass
class Runtime:
    """Everything one API process holds open, built in the lifespan."""

    settings: Settings
    router: Router
    store: UserStateStore
    publisher: EventPublisher
    metrics: ApiMetrics


async def _runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, which costs
    # more than the whole /next handler.
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
