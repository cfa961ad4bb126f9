"""Optional API keys: with ``BOTIFY_API__API_KEYS`` set, writes (``/next``, ``/last``), the
metrics and the docs need ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``).

Liveness, readiness and the catalogue's reads stay open: load balancers and probes call them
without credentials. Off (no keys) nothing is installed, so the embedded default and the
course's simulator, which sends no header, pay nothing. A plain ASGI middleware, not a route
dependency, because it also guards the docs and /metrics, which have no handler of ours to
depend on; it answers 401 itself since no domain error is involved.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import SecretStr

# Defined in starlette._utils; routing imports it and is the module apps use.
from starlette.routing import get_route_path  # type: ignore[attr-defined]
from starlette.types import ASGIApp, Receive, Scope, Send

# Paths that need a key: prefixes, so /docs/oauth2-redirect and /next/{user} are covered.
PROTECTED_PREFIXES = ("/next/", "/last/", "/metrics", "/docs", "/redoc", "/openapi.json")


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class ApiKeyMiddleware:
    """Answers 401 to a protected request without a known key."""

    def __init__(self, app: ASGIApp, keys: Iterable[SecretStr]) -> None:
        self._app = app
        # Compared as digests in constant time: the comparison leaks neither a key's length
        # nor how much of it matched.
        self._digests = tuple(_digest(k.get_secret_value().encode()) for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The path as routed: without the root_path a prefix proxy (--root-path) adds, or
        # /api/next/1 would pass unchecked and still reach /next.
        if scope["type"] != "http" or not get_route_path(scope).startswith(PROTECTED_PREFIXES):
            await self._app(scope, receive, send)
            return
        if self._known(_presented_key(scope["headers"])):
            await self._app(scope, receive, send)
            return
        body = orjson.dumps(
            {
                "error": "unauthorized",
                "detail": "this endpoint needs an API key: Authorization: Bearer <key>",
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="botify"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _known(self, key: bytes | None) -> bool:
        if key is None:
            return False
        presented = _digest(key)
        found = False
        for digest in self._digests:  # no early exit: every key costs the same
            found |= hmac.compare_digest(presented, digest)
        return found


def _presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value
    return None


def install_api_keys(app: FastAPI, keys: tuple[SecretStr, ...]) -> None:
    """Guard the protected paths with ``keys``, and say so in the OpenAPI spec; no-op
    without keys."""
    if not keys:
        return
    app.add_middleware(ApiKeyMiddleware, keys=keys)
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["apiKey"] = {"type": "http", "scheme": "bearer"}
        for path, operations in spec.get("paths", {}).items():
            if not path.startswith(PROTECTED_PREFIXES):
                continue
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "No API key, or an unknown one"
                }
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
