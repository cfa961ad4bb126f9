"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import RuntimeDep
from services.api.wire import ComponentHealth, HealthResponse

router = APIRouter(tags=["operations"])


@router.get("/")
async def root() -> dict[str, str]:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": "botify is alive"}


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Not ready: see which part."}},
)
async def health(rt: RuntimeDep) -> Response:
    """Readiness: Redis answers and listen events are being delivered (the oldest pending
    one is recent, the latest deliveries did not fail). A broker that is briefly slow is
    not a failure; events that stop reaching it are, even while it accepts connections."""
    try:
        # Not redundant with the client's socket timeout: without it, /health hung with
        # Redis SIGSTOPped (tests/integration/test_redis_stall.py).
        redis_ok = await asyncio.wait_for(rt.store.ping(), timeout=rt.settings.redis.timeout_s)
        redis = ComponentHealth(ok=redis_ok)
    except Exception as exc:  # any failure means not ready; say which
        redis = ComponentHealth(ok=False, detail=str(exc) or type(exc).__name__)
    # Sampled by the publisher's poll thread: no broker round trip, no client built here.
    delivery = rt.publisher.status
    ok = redis.ok and delivery.ok
    body = HealthResponse(status="ok" if ok else "unavailable", redis=redis, delivery=delivery)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus metrics, in its text exposition format."""
    status = rt.publisher.status
    rt.metrics.pending_events.set(status.pending)
    rt.metrics.pending_age.set(status.pending_age_s)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)
