"""The API's HTTP server: uvicorn with the limits a public endpoint needs.

uvicorn's own limits are used where it has them: concurrent connections (`limit_concurrency`,
503 beyond), the listen backlog, the keep-alive timeout. It has none for the time a client
may take to send its request's headers, nor for their size with its fast (httptools) parser:
`HeaderLimitedProtocol` adds both, so that a single instance is not held by idle or
slowloris connections. In the fleet HAProxy enforces the same in front (`timeout
http-request`, `maxconn`; botify_cli/load_balancer.py). Body limits are an ASGI middleware
(services/api/limits.py): they apply with any server.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from botify.settings import ApiSettings
from services.api.deadlines import SweptDeadlines


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size bound on request headers."""

    header_timeout_s = 10.0
    max_header_bytes = 16_384
    # Per class (protocol_for makes one per server): connections reading headers.
    _deadlines: ClassVar[SweptDeadlines[HeaderLimitedProtocol]]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_bytes = 0
        self._received_any = False
        self._reading_headers = True
        self._start_header_timer()

    def _start_header_timer(self) -> None:
        self._deadlines.start(self, self.loop)

    def _stop_header_timer(self) -> None:
        self._deadlines.stop(self)

    def _refuse(self, status: bytes) -> None:
        self._stop_header_timer()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def _headers_too_slow(self) -> None:
        # An idle keep-alive connection between requests is uvicorn's own timeout's business.
        if self._reading_headers and (self.cycle is None or self.cycle.response_complete):
            if not self._received_any:
                # A connection that never sent a byte (a preconnect, an idle socket) is
                # closed quietly, as a keep-alive one is.
                self._stop_header_timer()
                self.transport.close()
            else:
                self._refuse(b"408 Request Timeout")

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if self._reading_headers:
            # Refused before parsing: headers that do not end within the bound. (A chunk may
            # also carry the body and pipelined requests after the end of the headers.)
            budget = self.max_header_bytes - self._header_bytes
            if len(data) > budget and data.find(b"\r\n\r\n", 0, max(0, budget)) < 0:
                self._refuse(b"431 Request Header Fields Too Large")
                return
            self._header_bytes += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True
        self._header_bytes = 0
        self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)


HeaderLimitedProtocol._deadlines = SweptDeadlines(
    HeaderLimitedProtocol.header_timeout_s, HeaderLimitedProtocol._headers_too_slow
)


def protocol_for(settings: ApiSettings) -> type[HeaderLimitedProtocol]:
    """The protocol class with ``settings``' header limits (uvicorn takes a class)."""
    return type(
        "BotifyHttpProtocol",
        (HeaderLimitedProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "max_header_bytes": settings.max_header_bytes,
            "_deadlines": SweptDeadlines(
                settings.header_timeout_s, HeaderLimitedProtocol._headers_too_slow
            ),
        },
    )


def server_config(app: Any, settings: ApiSettings) -> uvicorn.Config:
    """uvicorn's config for the API: its limits from ``settings``."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings),
        limit_concurrency=settings.max_connections,
        backlog=settings.backlog,
        # uvicorn annotates it int but uses it as a delay in seconds: a float works.
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
    )
