"""BotifyClient against a scripted raw HTTP server on a loopback port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from botify_sim.client import BotifyClient, ProtocolError

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"


def ok(body: bytes) -> bytes:
    return OK % (len(body), body)


class ScriptedServer:
    """Answers each request with the next scripted response; ``None`` closes the
    connection without answering. Records (connection number, raw request)."""

    def __init__(self, script: list[bytes | None], close_after: frozenset[int] = frozenset()):
        self.script, self.close_after = list(script), close_after
        self.requests: list[tuple[int, bytes]] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection = 0
        while self.script:
            conn, _ = self.sock.accept()
            with conn:
                buffer = b""
                while self.script:
                    while b"\r\n\r\n" not in buffer:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buffer += data
                    if b"\r\n\r\n" not in buffer:
                        break
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    self.requests.append((connection, head + b"\r\n\r\n" + rest[:length]))
                    buffer = rest[length:]
                    answer = self.script.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if len(self.requests) - 1 in self.close_after:
                        break
            connection += 1


Serve = Callable[..., ScriptedServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[ScriptedServer] = []

    def make(
        script: list[bytes | None], close_after: frozenset[int] = frozenset()
    ) -> ScriptedServer:
        servers.append(ScriptedServer(script, close_after))
        return servers[-1]

    yield make
    for s in servers:
        s.sock.close()


def test_requests_are_well_formed_and_share_one_connection(serve: Serve) -> None:
    server = serve([ok(b'{"user":7,"track":42}'), ok(b'{"user":7}')])
    with BotifyClient(server.url + "/") as client:
        assert client.next(7, 3, 1.0) == 42
        client.last(7, 42, 0.25)
    (c1, r1), (c2, r2) = server.requests
    assert c1 == c2 == 0
    head, body = r1.split(b"\r\n\r\n")
    assert head.startswith(b"POST /next/7 HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in head
    assert f"Host: {server.url.removeprefix('http://')}".encode() in head
    assert body == b'{"track":3,"time":1.0}'
    assert r2.startswith(b"POST /last/7 HTTP/1.1") and r2.endswith(b'{"track":42,"time":0.25}')


def test_a_path_prefix_in_the_url_is_kept(serve: Serve) -> None:
    server = serve([ok(b'{"track":1}')])
    with BotifyClient(server.url + "/api/") as client:
        client.next(1, 2, 0.5)
    assert server.requests[0][1].startswith(b"POST /api/next/1 HTTP/1.1")


def test_chunked_answers_are_decoded(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"tra\r\n8;ext=1\r\nck": 99}\r\n0\r\n\r\n'
    )
    server = serve([chunked, ok(b'{"track":5}')])
    with BotifyClient(server.url) as client:
        assert client.next(1, 2, 0.5) == 99
        assert client.next(1, 99, 0.5) == 5
    assert [c for c, _ in server.requests] == [0, 0]


def test_connection_close_and_unframed_bodies_reconnect(serve: Serve) -> None:
    closing = b'HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\n{"track":3}'
    unframed = b'HTTP/1.0 200 OK\r\n\r\n{"track":4}'
    server = serve([closing, unframed, ok(b'{"track":5}')], close_after=frozenset({0, 1}))
    with BotifyClient(server.url) as client:
        assert [client.next(1, 1, 1.0) for _ in range(3)] == [3, 4, 5]
    assert [c for c, _ in server.requests] == [0, 1, 2]


def test_a_connection_closed_while_idle_is_retried_once(serve: Serve) -> None:
    # The server drops the kept-alive connection at the second request, unanswered.
    server = serve([ok(b'{"track":3}'), None, ok(b'{"track":4}')])
    with BotifyClient(server.url) as client:
        assert client.next(1, 1, 1.0) == 3
        assert client.next(1, 3, 0.5) == 4
    assert [c for c, _ in server.requests] == [0, 0, 1]


def test_errors_and_malformed_answers_raise_protocol_error(serve: Serve) -> None:
    server = serve(
        [
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}",
            ok(b'{"user":1}'),
            ok(b'{"track":"7"}'),
            ok(b"<html>"),
        ]
    )
    with BotifyClient(server.url) as client:
        with pytest.raises(ProtocolError, match="404"):
            client.next(1, 1, 1.0)
        with pytest.raises(ProtocolError, match="integer track"):
            client.next(1, 1, 1.0)
        with pytest.raises(ProtocolError, match="integer track"):
            client.next(1, 1, 1.0)
        with pytest.raises(ProtocolError, match="non-JSON"):
            client.next(1, 1, 1.0)


def test_a_refused_connection_raises_oserror() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with BotifyClient(f"http://127.0.0.1:{port}", timeout=2) as client:
        with pytest.raises(OSError):
            client.next(1, 1, 1.0)


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError):
        BotifyClient("ftp://example.org")
