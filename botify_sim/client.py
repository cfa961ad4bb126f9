"""A lean keep-alive HTTP/1.1 client for the protocol's two POSTs.

The driver spends most of its time here, and every microsecond it spends is taken from the
API under test on a small machine. So the client writes each request as one preformatted
buffer on one persistent socket and parses only what the protocol needs: the status line,
Content-Length (or chunked framing) and Connection. bench/bench_sim.py compares it with
http.client and httpx against the same server.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import orjson

_MAX_HEAD = 64 * 1024


class ProtocolError(Exception):
    """The server answered something the botify protocol does not allow."""


class BotifyClient:
    """One keep-alive connection to a botify API; not thread-safe (one per worker)."""

    def __init__(self, base_url: str, timeout: float = 30.0, api_key: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if self._tls else 80))
        self._timeout = timeout
        self._prefix = parts.path.rstrip("/")
        host = parts.netloc.rpartition("@")[2]  # as written in the URL, [::1] brackets and all
        if api_key and ("\r" in api_key or "\n" in api_key):
            raise ValueError("an API key cannot contain a line break")
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        self._headers = (
            f"Host: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._sock: socket.socket | None = None
        self._buffer = b""

    def next(self, user: int, track: int, time: float) -> int:
        """POST /next/{user}; the recommended track."""
        answer = self.post(f"/next/{user}", track, time)
        answered = answer.get("track") if isinstance(answer, dict) else None
        if not isinstance(answered, int) or isinstance(answered, bool):
            raise ProtocolError(f"/next answered without an integer track: {answer!r}")
        return answered

    def last(self, user: int, track: int, time: float) -> None:
        """POST /last/{user}: the session's final track and its time."""
        self.post(f"/last/{user}", track, time)

    def post(self, path: str, track: int, time: float) -> object:
        body = orjson.dumps({"track": track, "time": time})
        request = b"".join(
            (
                f"POST {self._prefix}{path} HTTP/1.1\r\n".encode(),
                self._headers,
                str(len(body)).encode(),
                b"\r\n\r\n",
                body,
            )
        )
        reused = self._sock is not None
        try:
            status, payload = self._exchange(request)
        except ConnectionError:
            self.close()
            if not reused:
                raise
            # A kept-alive connection the server closed while idle: retry once on a new one.
            status, payload = self._exchange(request)
        if status != 200:
            raise ProtocolError(f"{path} answered {status}: {payload[:200]!r}")
        try:
            return orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"{path} answered non-JSON: {payload[:200]!r}") from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buffer = None, b""

    def __enter__(self) -> BotifyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=self._timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self._address[0])
        return sock

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(request)
        head = self._read_until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            version, code = lines[0].split(b" ", 2)[:2]
            status = int(code)
        except ValueError:
            raise ProtocolError(f"bad status line {lines[0][:100]!r}") from None
        length, chunked, close = None, False, version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = _number(value, 10)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if chunked:
            payload = self._read_chunked()
        elif length is not None:
            payload = self._read_exactly(length)
        else:  # no framing: the body runs to the end of the connection
            payload, close = self._read_to_eof(), True
        if close:
            self.close()
        return status, payload

    def _recv(self) -> bytes:
        assert self._sock is not None
        data = self._sock.recv(65536)
        if not data:
            raise _EmptyResponseError("the server closed the connection")
        return data

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            if len(self._buffer) > _MAX_HEAD:
                raise ProtocolError("response head too long")
            self._buffer += self._recv()
        out, self._buffer = self._buffer[:end], self._buffer[end + len(marker) :]
        return out

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += self._recv()
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _read_chunked(self) -> bytes:
        parts = []
        while size := _number(self._read_until(b"\r\n").split(b";")[0], 16):
            parts.append(self._read_exactly(size))
            self._read_exactly(2)
        while self._read_until(b"\r\n"):  # trailers, up to the empty line
            pass
        return b"".join(parts)

    def _read_to_eof(self) -> bytes:
        out = self._buffer
        try:
            while True:
                out += self._recv()
        except _EmptyResponseError:
            return out


def _number(text: bytes, base: int) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise ProtocolError(f"bad length {text[:40]!r} in the response framing") from None


class _EmptyResponseError(ConnectionError):
    """The connection closed before a full response arrived."""
