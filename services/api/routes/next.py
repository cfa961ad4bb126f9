"""``POST /next/{user}`` and ``POST /last/{user}``: the botify protocol."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from botify.errors import BackendUnavailableError
from botify.events import trusted_listen_event
from botify.experiments import Assignment
from services.api.deps import Runtime
from services.api.wire import (
    LastResponse,
    NextRequest,
    NextResponse,
    error_responses,
    path_doc,
    path_id,
)

router = APIRouter(tags=["recommendations"])

JSON = "application/json"

# The body is parsed by hand: FastAPI's generic body machinery costs more than the whole
# recommendation. OpenAPI still documents it through `openapi_extra`.
BODY_DOC = {
    "parameters": [path_doc("user", "The user's id.")],
    "requestBody": {
        "required": True,
        "content": {JSON: {"schema": NextRequest.model_json_schema()}},
    },
}


async def parse(request: Request) -> tuple[int, NextRequest]:
    """The user from the path and the body, validated as FastAPI would, at a fraction of
    the cost of its generic parameter machinery (which dominated /next's profile)."""
    user = path_id(request.path_params["user"], "user")
    try:
        return user, NextRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(_located("body", exc)) from None


def refuse_undelivered(rt: Runtime) -> None:
    """Under the "refuse" policy, a 503 (before any side effect) while listen events are not
    being delivered: a 200 would promise an event that is likely lost."""
    status = rt.publisher.status
    if not status.ok and rt.settings.api.on_delivery_failure == "refuse":
        raise BackendUnavailableError(f"listen events are not being delivered: {status.detail}")


async def accepted_listen(request: Request) -> tuple[Runtime, int, NextRequest]:
    """The runtime, user and listen of a /next or /last call that may go ahead: its body is
    valid, its track known (refused before any Redis round trip) and events are delivered."""
    user, body = await parse(request)
    rt: Runtime = request.app.state.runtime
    rt.router.check_track(body.track)
    refuse_undelivered(rt)
    return rt, user, body


def _located(where: str, exc: ValidationError) -> list[dict[str, object]]:
    return [{**e, "loc": (where, *e.get("loc", ()))} for e in exc.errors()]


async def publish(
    rt: Runtime,
    message: str,
    user: int,
    body: NextRequest,
    assignment: Assignment,
    started: float,
    recommendation: int | None = None,
    model_version: int | None = None,
) -> None:
    """Publish the request's listen event and count it. In the "acks" durability mode it
    returns once the broker has the event (else 503), otherwise without waiting."""
    latency = time.perf_counter() - started
    # Every field is already validated: the body by NextRequest, the track against the
    # catalog, the rest comes from the platform. Validating again cost more than producing.
    event = trusted_listen_event(
        message=message,
        timestamp=time.time_ns() // 1_000_000,
        user=user,
        track=body.track,
        time=body.time,
        recommendation=recommendation,
        latency=latency,
        recommender=assignment.recommender,
        model_version=model_version,
        experiments=assignment.arms,
    )
    # The publisher was built for the durability mode: it alone says which one it serves.
    if rt.publisher.acked:
        await rt.publisher.publish_acked(event, rt.settings.api.ack_timeout_s)
        # The handler's latency includes the wait for the broker; the event could not.
        latency = time.perf_counter() - started
    else:
        rt.publisher.publish(event)
    # Only /next serves a recommendation, so only it counts one for the arm.
    arm = None if recommendation is None else (assignment.arm or "-")
    rt.metrics.served(f"/{message}/{{user}}", assignment.recommender, arm, latency)


# Everything /next and /last can answer besides 200.
RESPONSES = error_responses(400, 404, 408, 413, 422, 503)


@router.post(
    "/next/{user}", response_model=NextResponse, responses=RESPONSES, openapi_extra=BODY_DOC
)
async def next_track(request: Request) -> Response:
    """Record the listen and return the next track for the user."""
    started = time.perf_counter()
    rt, user, body = await accepted_listen(request)
    state, session = await rt.store.load_for_request(user)
    decision = rt.router.next_track(user, body.track, body.time, state, session)
    await rt.store.record_request(user, body.track, body.time, decision.track)
    await publish(
        rt, "next", user, body, decision.assignment, started, decision.track, decision.model_version
    )
    # Serialised by hand: re-validating our own two ints through response_model costs more
    # than the recommender does. The shape is still documented by response_model.
    return Response(orjson.dumps({"user": user, "track": decision.track}), media_type=JSON)


@router.post(
    "/last/{user}", response_model=LastResponse, responses=RESPONSES, openapi_extra=BODY_DOC
)
async def last_track(request: Request) -> Response:
    """Record the session's final listen and close the session."""
    started = time.perf_counter()
    rt, user, body = await accepted_listen(request)
    await rt.store.end_session(user)
    await publish(rt, "last", user, body, rt.router.plan.assign(user), started)
    return Response(orjson.dumps({"user": user}), media_type=JSON)
