"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from botify.kafka import broker_reachable
from services.api.deps import RuntimeDep
from services.api.wire import ComponentHealth, HealthResponse

router = APIRouter(tags=["operations"])


@router.get("/")
async def root() -> dict[str, str]:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": "botify is alive"}


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(rt: RuntimeDep) -> Response:
    """Readiness: Redis and the broker both answer."""
    try:
        redis_ok = await asyncio.wait_for(rt.store.ping(), timeout=2)
        redis = ComponentHealth(ok=redis_ok)
    except Exception as exc:  # any failure means not ready; say which
        redis = ComponentHealth(ok=False, detail=str(exc) or type(exc).__name__)
    broker_ok = await asyncio.to_thread(broker_reachable, rt.settings.kafka, 2.0)
    broker = ComponentHealth(ok=broker_ok, detail="" if broker_ok else "broker unreachable")
    ok = redis.ok and broker.ok
    body = HealthResponse(status="ok" if ok else "unavailable", redis=redis, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> Response:
    rt.metrics.pending_events.set(rt.publisher.pending())
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
