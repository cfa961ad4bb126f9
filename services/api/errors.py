"""The only place where errors become HTTP answers: one table, one body shape."""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from botify.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    BotifyError,
    InvalidEventError,
    UnknownTrackError,
)

logger = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[BotifyError], int] = {
    UnknownTrackError: 404,
    InvalidEventError: 422,
    BackendUnavailableError: 503,
}


HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
}


def status_for(exc: BotifyError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(status: int, code: str, detail: object) -> Response:
    body = orjson.dumps({"error": code, "detail": detail}, default=str)
    return Response(body, status_code=status, media_type="application/json")


def _route(request: Request) -> str:
    # "unmatched": no route (a 404), or refused before routing (a declared body too large).
    route = request.scope.get("route")
    return getattr(route, "path", "unmatched")


def count_error(request: Request, status: int, code: str) -> None:
    """Count an error answer: by the handlers below, and by the body limits' early 413."""
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        route = _route(request)
        metrics.requests.labels(route, str(status)).inc()
        metrics.errors.labels(route, code).inc()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BotifyError)
    async def _domain(request: Request, exc: BotifyError) -> Response:
        status = status_for(exc)
        count_error(request, status, exc.code)
        return error_response(status, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        malformed = any(e.get("type") == "json_invalid" for e in errors)
        code, status = ("malformed_json", 400) if malformed else ("invalid_request", 422)
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        count_error(request, status, code)
        return error_response(status, code, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        count_error(request, exc.status_code, code)
        response = error_response(exc.status_code, code, str(exc.detail))
        # 405's Allow header, among others.
        response.headers.update(exc.headers or {})
        if exc.status_code in (408, 413):  # the rest of the body is not read: do not reuse
            response.headers["connection"] = "close"
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client left mid-upload: nobody reads this answer, and it is not our error.
        count_error(request, 499, "client_disconnected")
        return error_response(499, "client_disconnected", "the client went away")

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> Response:
        logger.error("redis failed on %s: %s", _route(request), exc)
        if isinstance(exc, RedisTimeoutError):
            return await _domain(request, BackendTimeoutError(f"redis timed out: {exc}"))
        count_error(request, 503, "backend_unavailable")
        return error_response(503, "backend_unavailable", f"redis: {exc}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s", _route(request))
        count_error(request, 500, "internal_error")
        return error_response(500, "internal_error", "internal error; see the server log")
