"""Request body limits, as a pure ASGI middleware (so they hold with any ASGI server).

A declared ``Content-Length`` above the bound is answered 413 before a byte of the body is
read; a chunked body is cut off with 413 as soon as it grows past it. A body that stops
arriving (a ``Content-Length`` larger than what is sent) is answered 408 after
``body_timeout_s`` (to within a quarter of it) instead of holding the request forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.deadlines import SweptDeadlines
from services.api.errors import count_error, error_response


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_s: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        # Requests waiting for body bytes, cancelled (and marked so) past their deadline.
        self._waiting: SweptDeadlines[asyncio.Task[Any]] = SweptDeadlines(
            body_timeout_s, self._time_out
        )
        self._timed_out: set[asyncio.Task[Any]] = set()

    def _time_out(self, task: asyncio.Task[Any]) -> None:
        self._timed_out.add(task)
        task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0  # the HTTP parser refuses those before we see them
                if declared > limit:
                    count_error(Request(scope), 413, "body_too_large")
                    response = error_response(
                        413, "body_too_large", f"the body may be at most {limit} bytes"
                    )
                    response.headers["connection"] = "close"
                    await response(scope, receive, send)
                    return
                break
        received = 0
        timeout = self.body_timeout_s
        waiting, timed_out = self._waiting, self._timed_out

        async def limited() -> Message:
            nonlocal received
            task = asyncio.current_task()
            assert task is not None
            waiting.start(task, asyncio.get_running_loop())
            try:
                message: dict[str, Any] = await receive()  # type: ignore[assignment]
            except asyncio.CancelledError:
                if task not in timed_out:
                    raise
                timed_out.discard(task)
                task.uncancel()
                raise HTTPException(
                    408, f"the request body did not arrive within {timeout:g} s"
                ) from None
            finally:
                waiting.stop(task)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the body may be at most {limit} bytes")
            return message

        await self.app(scope, limited, send)
