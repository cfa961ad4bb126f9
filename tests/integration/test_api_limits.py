"""Rude clients against a real API process (uvicorn, a real broker and Redis): idle and
slow connections, oversized headers and bodies, bodies that never come, clients that leave
mid-upload. Each gets a quick 4xx or a closed socket; everyone else is still served."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from botify.settings import LoadBalancerSettings
from botify_cli.load_balancer import LoadBalancerPlan, haproxy_process
from botify_cli.processes import free_port
from tests.integration.api_process import api_process

pytestmark = [pytest.mark.slow]

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
MAX_BODY = 4096
IDLE_CONNECTIONS = 1000


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, broker_url: str, redis_url: str
) -> Iterator[tuple[str, Path]]:
    log_dir = tmp_path_factory.mktemp("api-limits")
    with api_process(
        log_dir,
        broker_url,
        redis_url,
        "botify.limits.v1",
        BOTIFY_API__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        BOTIFY_API__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        BOTIFY_API__MAX_BODY_BYTES=str(MAX_BODY),
    ) as (url, _):
        yield url, log_dir / "api.log"


# A request that stops before the end of its headers.
HEADERS_CUT = b"POST /next/1 HTTP/1.1\r\nHost: x\r\n"


def post_body(content_length: int, body: bytes = b"") -> bytes:
    """A ``POST /next/1`` that declares ``content_length`` bytes of JSON and sends ``body``."""
    return (
        b"POST /next/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (content_length, body)
    )


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def answer(url: str, request: bytes) -> tuple[int | None, float]:
    """Send the raw ``request`` on a new connection: the status of the answer (None: closed
    without one) and the seconds it took after the request was sent."""
    with connect(url) as sock:
        sock.sendall(request)
        started = time.monotonic()
        return read_status(sock), time.monotonic() - started


def read_status(sock: socket.socket) -> int | None:
    """The status of the first response on ``sock``; None if it was closed without one."""
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return int(data.split(b" ", 2)[1])


def server_errors(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("botify_api_requests_total{") and 'status="5' in line
    )


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True


def test_1000_idle_connections_leave_other_clients_served_within_p99_50_ms(
    tmp_path: Path, broker_url: str, redis_url: str
) -> None:
    # Idle connections held for the whole measurement (the header timeout would close them).
    env = {"BOTIFY_API__HEADER_TIMEOUT_S": "120"}
    with api_process(tmp_path, broker_url, redis_url, "botify.limits.v1", **env) as (url, _):
        idle = [connect(url) for _ in range(IDLE_CONNECTIONS)]
        try:
            measure_next_beside(url, idle)
        finally:
            for sock in idle:
                sock.close()


def measure_next_beside(url: str, idle: list[socket.socket]) -> None:
    """p99 of /next on one client while ``idle`` hold their connections."""
    with httpx.Client(base_url=url, timeout=5) as client:
        latencies = []
        for user in range(300):
            started = time.perf_counter()
            resp = client.post(f"/next/{user}", json={"track": 1, "time": 0.5})
            latencies.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200, resp.text
    p99 = statistics.quantiles(latencies, n=100)[98]
    print(
        f"\n{IDLE_CONNECTIONS} idle connections: /next p50 "
        f"{statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms"
    )
    assert p99 <= 50
    assert all(still_open(sock) for sock in idle)


def test_a_connection_that_sends_no_complete_headers_in_time_is_closed(
    api: tuple[str, Path],
) -> None:
    url, _ = api
    with connect(url) as idle, connect(url) as slow:
        slow.sendall(HEADERS_CUT)  # and never the rest
        started = time.monotonic()
        # Closed quietly when it sent nothing; 408 when it started a request.
        assert read_status(idle) is None
        assert read_status(slow) == 408
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 2


def test_oversized_headers_are_refused_with_431(api: tuple[str, Path]) -> None:
    url, _ = api
    status, _ = answer(url, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100_000 + b"\r\n\r\n")
    assert status == 431


def test_a_declared_body_over_the_bound_is_refused_with_413_before_it_is_sent(
    api: tuple[str, Path],
) -> None:
    url, _ = api
    status, took = answer(url, post_body(100_000_000))
    assert status == 413
    assert took < 1
    # Answered before routing (so under no route), and counted all the same.
    assert errors_counted(url, "unmatched", "body_too_large") >= 1


def errors_counted(url: str, route: str, error: str) -> float:
    """``botify_api_errors_total`` for one route and error, from the API's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "botify_api_errors_total" and sample.labels == {
                "route": route,
                "error": error,
            }:
                return sample.value
    raise AssertionError(f"no botify_api_errors_total{{route={route!r}, error={error!r}}}")


def test_a_chunked_body_over_the_bound_is_refused_with_413(api: tuple[str, Path]) -> None:
    url, _ = api
    with httpx.Client(base_url=url, timeout=5) as client:
        chunks = (b"x" * 1024 for _ in range(64))
        resp = client.post("/next/1", content=chunks)
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"] == "body_too_large"


def test_a_body_shorter_than_its_content_length_gets_408_not_a_hang(
    api: tuple[str, Path],
) -> None:
    url, _ = api
    status, took = answer(url, post_body(100, b'{"track": 1'))
    assert status == 408
    assert took < BODY_TIMEOUT_S + 2


def test_a_client_leaving_mid_upload_is_no_server_error_and_logs_no_traceback(
    api: tuple[str, Path],
) -> None:
    url, log = api
    with httpx.Client(base_url=url, timeout=5) as client:
        before = server_errors(client)
        for _ in range(3):
            with connect(url) as sock:
                sock.sendall(post_body(100, b'{"track"'))
                time.sleep(0.1)
        time.sleep(0.5)
        assert server_errors(client) == before
        # Still serving.
        assert client.post("/next/1", json={"track": 1, "time": 0.5}).status_code == 200
    assert "Traceback" not in log.read_text()


def test_405_names_the_allowed_methods(api: tuple[str, Path]) -> None:
    url, _ = api
    resp = httpx.get(f"{url}/next/1", timeout=5)
    assert resp.status_code == 405
    assert resp.headers["allow"] == "POST"


def test_the_load_balancer_cuts_slow_requests_before_they_reach_an_instance(
    tmp_path: Path, api: tuple[str, Path]
) -> None:
    url, _ = api
    port = int(url.rsplit(":", 1)[1])
    plan = LoadBalancerPlan(free_port(), free_port(), (("api-1", port),))
    settings = LoadBalancerSettings(request_timeout_s=1.0)
    proc = haproxy_process(plan, settings, tmp_path, {}, 30).start()
    try:
        with connect(plan.url) as headers, connect(plan.url) as body:
            headers.sendall(HEADERS_CUT)  # never the end
            body.sendall(post_body(100, b'{"track": 1'))
            started = time.monotonic()
            assert read_status(headers) == 408
            assert read_status(body) == 408
            assert time.monotonic() - started < 3
        resp = httpx.post(f"{plan.url}/next/1", json={"track": 1, "time": 0.5}, timeout=5)
        assert resp.status_code == 200
    finally:
        proc.stop()
