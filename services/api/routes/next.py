"""``POST /next/{user}`` and ``POST /last/{user}``: the botify protocol."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path

from botify.events import MAX_ID, make_listen_event
from services.api.deps import RuntimeDep
from services.api.wire import LastResponse, NextRequest, NextResponse

router = APIRouter(tags=["recommendations"])

UserId = Annotated[int, Path(ge=0, le=MAX_ID, description="The user's id.")]


@router.post("/next/{user}", response_model=NextResponse)
async def next_track(user: UserId, body: NextRequest, rt: RuntimeDep) -> NextResponse:
    """Record the listen and return the next track for the user."""
    started = time.perf_counter()
    state, served = await rt.store.load_for_request(user)
    decision = rt.router.next_track(user, body.track, body.time, state, served)
    await rt.store.record_served(user, (body.track, decision.track))
    latency = time.perf_counter() - started
    rt.publisher.publish(
        make_listen_event(
            message="next",
            timestamp=time.time_ns() // 1_000_000,
            user=user,
            track=body.track,
            time=body.time,
            recommendation=decision.track,
            latency=latency,
            recommender=decision.recommender,
            model_version=decision.model_version,
            experiments=decision.arms,
        )
    )
    m = rt.metrics
    m.latency.labels("/next/{user}", decision.recommender).observe(latency)
    m.requests.labels("/next/{user}", "200").inc()
    routing = rt.router.plan.routing
    m.recommendations.labels(
        decision.recommender, decision.arms[routing.name] if routing else "-"
    ).inc()
    return NextResponse(user=user, track=decision.track)


@router.post("/last/{user}", response_model=LastResponse)
async def last_track(user: UserId, body: NextRequest, rt: RuntimeDep) -> LastResponse:
    """Record the session's final listen and close the session."""
    started = time.perf_counter()
    rt.router.check_track(body.track)
    await rt.store.end_session(user)
    latency = time.perf_counter() - started
    recommender = rt.router.plan.recommender_for(user)
    rt.publisher.publish(
        make_listen_event(
            message="last",
            timestamp=time.time_ns() // 1_000_000,
            user=user,
            track=body.track,
            time=body.time,
            recommendation=None,
            latency=latency,
            recommender=recommender,
            experiments=rt.router.plan.arms(user),
        )
    )
    rt.metrics.latency.labels("/last/{user}", recommender).observe(latency)
    rt.metrics.requests.labels("/last/{user}", "200").inc()
    return LastResponse(user=user)
