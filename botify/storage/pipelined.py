"""One Redis connection that pipelines every command: the API's hot-path client.

Commands are written as soon as they are issued and replies are matched in order (Redis
answers a connection's commands in the order it received them). So a write issued before a
read is applied before it, and the writer need not wait for its reply: read-your-writes in
one round trip. redis-py's asyncio client costs ~100 µs of Python per call on this path;
this costs a few µs over hiredis, the Redis project's own C protocol parser.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from typing import Any

import hiredis

from botify.errors import BackendTimeoutError, BackendUnavailableError
from botify.storage.connection import RedisEndpoint

logger = logging.getLogger(__name__)


class _RespProtocol(asyncio.Protocol):
    def __init__(self, timeout_s: float | None = None) -> None:
        self.reader = hiredis.Reader()
        self.pending: deque[asyncio.Future[Any] | None] = deque()
        self.transport: asyncio.Transport | None = None
        self.failures = 0
        self.outbox: list[bytes] = []
        self.timeout_s = timeout_s
        # When a reply last came, or the first command after an idle spell went out.
        self.progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None

    def flush(self) -> None:
        out, self.outbox = self.outbox, []
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.timeout_s is not None:
            self._watch()

    def _watch(self) -> None:
        # One timer per connection rather than one per command: the hot path pays nothing.
        # Commands waiting with no reply for timeout_s fail, and the connection is dropped
        # (its replies could no longer be matched); the next command reconnects.
        assert self.timeout_s is not None
        loop = asyncio.get_running_loop()
        if self.pending and loop.time() - self.progress >= self.timeout_s:
            self.connection_lost(
                BackendTimeoutError(
                    f"redis did not answer within {self.timeout_s:g} s (a command already "
                    "sent may still be applied when it recovers)"
                )
            )
            return
        if self.transport is not None:
            self._watchdog = loop.call_later(self.timeout_s / 10, self._watch)

    def data_received(self, data: bytes) -> None:
        if self.timeout_s is not None:
            self.progress = asyncio.get_running_loop().time()
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            fut = self.pending.popleft()
            if isinstance(reply, hiredis.ReplyError):
                if fut is None:
                    self.failures += 1
                    logger.error("redis command failed: %s", reply)
                elif not fut.done():
                    fut.set_exception(reply)
            elif fut is not None and not fut.done():
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.transport is not None:
            self.transport.abort()
        self.transport = None
        error = (
            exc
            if isinstance(exc, BackendUnavailableError)
            else BackendUnavailableError(f"redis connection lost: {exc or 'closed'}")
        )
        while self.pending:
            fut = self.pending.popleft()
            if fut is not None and not fut.done():
                fut.set_exception(error)


def _close(proto: _RespProtocol) -> None:
    if proto.transport is not None:
        proto.transport.close()


class PipelinedRedis:
    """``call`` returns a future of the reply; ``send`` does not wait for one."""

    def __init__(self, endpoint: RedisEndpoint, timeout_s: float | None = None) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    @property
    def failures(self) -> int:
        return self._protocol.failures if self._protocol else 0

    async def _connected(self) -> _RespProtocol:
        proto = self._protocol
        if proto is not None and proto.transport is not None:
            return proto
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._protocol is None or self._protocol.transport is None:
                proto = await self._open()
                end = self._endpoint
                try:
                    if end.password:
                        auth = (end.username, end.password) if end.username else (end.password,)
                        await self._issue(proto, ("AUTH", *auth), wait=True)
                    if end.db:
                        await self._issue(proto, ("SELECT", end.db), wait=True)
                except hiredis.ReplyError as exc:
                    # Not kept: a connection that failed AUTH would answer NOAUTH to all.
                    _close(proto)
                    raise BackendUnavailableError(f"redis {end.describe()}: {exc}") from None
                except BaseException:  # cancelled (a caller's timeout): not leaked either
                    _close(proto)
                    raise
                self._protocol = proto
            return self._protocol

    async def _open(self) -> _RespProtocol:
        loop, end = asyncio.get_running_loop(), self._endpoint

        def protocol() -> _RespProtocol:
            return _RespProtocol(self._timeout_s)

        try:
            if end.socket_path is not None:
                connecting = loop.create_unix_connection(protocol, end.socket_path)
            else:
                # rediss://: the handshake completes before AUTH is written.
                connecting = loop.create_connection(
                    protocol,
                    end.host,
                    end.port,
                    ssl=end.tls,
                    server_hostname=end.host if end.tls else None,
                )
            _, proto = await asyncio.wait_for(connecting, self._timeout_s)
        except TimeoutError:
            raise BackendTimeoutError(
                f"redis {end.describe()}: no connection within {self._timeout_s:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise BackendUnavailableError(f"redis {end.describe()}: {exc}") from None
        return proto

    @staticmethod
    def _issue(proto: _RespProtocol, args: tuple[Any, ...], wait: bool) -> asyncio.Future[Any]:
        assert proto.transport is not None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] | None = loop.create_future() if wait else None
        if not proto.pending and proto.timeout_s is not None:
            proto.progress = loop.time()
        proto.pending.append(fut)
        # Commands issued in one turn of the event loop (one request's reads, its writes,
        # other requests' commands) go out in one write at the end of the turn: a socket
        # write costs more than the command. Replies still match in order: the buffer is
        # written in the order commands were issued.
        if not proto.outbox:
            loop.call_soon(proto.flush)
        proto.outbox.append(hiredis.pack_command(args))
        return fut  # type: ignore[return-value]

    async def call(self, *args: Any) -> Any:
        proto = await self._connected()
        return await self._issue(proto, args, wait=True)

    async def call_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Issue several commands back to back and wait for all their replies."""
        proto = await self._connected()
        futures = [self._issue(proto, args, wait=True) for args in commands]
        # Every reply is collected before the first error is raised, so none is left
        # unretrieved (asyncio would log each one). A plain loop: this is /next's hot path,
        # and gather() costs more than the two replies.
        replies: list[Any] = []
        error: BaseException | None = None
        for fut in futures:
            try:
                replies.append(await fut)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error
        return replies

    async def send(self, *commands: tuple[Any, ...]) -> None:
        """Issue commands without waiting for replies (a failure is logged and counted)."""
        proto = await self._connected()
        for args in commands:
            self._issue(proto, args, wait=False)

    async def close(self) -> None:
        proto = self._protocol
        if proto is not None and proto.transport is not None:
            # PING drains everything issued before it, so fire-and-forget writes land.
            try:
                await asyncio.wait_for(self._issue(proto, ("PING",), wait=True), timeout=2)
            except (TimeoutError, BackendUnavailableError):
                pass
            if proto.transport is not None:
                proto.transport.close()
        self._protocol = None
