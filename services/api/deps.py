"""What handlers need, as ``Annotated`` dependencies that tests can override."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from botify.kafka import ListenPublisher
from botify.serving import Router
from botify.settings import Settings
from botify.storage import UserStateStore
from services.api.metrics import ApiMetrics


@dataclass
class Runtime:
    """Everything one API process holds open, built in the lifespan."""

    settings: Settings
    router: Router
    store: UserStateStore
    publisher: ListenPublisher
    metrics: ApiMetrics


async def _runtime(request: Request) -> Runtime:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, which costs
    # more than the whole /next handler.
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
