"""Driver throughput against a trivial local botify server, as ratios to a baseline.

    .venv/bin/python bench/bench_sim.py [--sessions 4000] [--processes 2]

Starts a tiny uvicorn app on a free 127.0.0.1 port, in its own process: a raw ASGI callable
that answers ``/next`` with a random catalog track and ``/last`` with the user, so the
server costs as little as a Python HTTP server can. Then measures, with the same number of
processes and about the same number of requests each:

- baseline: bare ``/next`` requests in a loop, no world and no user model, through our
  client, through http.client and through httpx (for the choice of client);
- driver: ``drive()`` itself on the default 50,000-track world (sessions, user model,
  /next and /last, results back to the parent).

The driver's ratio to the bare-client baseline is the cost of everything but HTTP. All
traffic goes to 127.0.0.1 and is bounded by --sessions.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import random
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from botify_sim.client import BotifyClient
from botify_sim.config import load_config
from botify_sim.driver import drive
from botify_sim.world import generate_world, save_world

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_app(tracks: int) -> Callable[..., Awaitable[None]]:
    """A raw ASGI app: no framework between uvicorn and the answer."""
    rng = random.Random(0)

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        user = scope["path"].rsplit("/", 1)[-1]
        if scope["path"].startswith("/next/"):
            body = b'{"user":%s,"track":%d}' % (user.encode(), rng.randrange(tracks))
        else:
            body = b'{"user":%s}' % user.encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def serve(port: int, tracks: int) -> None:
    import uvicorn

    uvicorn.run(make_app(tracks), host="127.0.0.1", port=port, log_level="warning")


def wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the bench server did not start")


def bare_requests(kind: str, url: str, n: int, user: int) -> None:
    """n /next requests through one keep-alive connection of the given client."""
    if kind == "ours":
        with BotifyClient(url) as c:
            for i in range(n):
                c.next(user, i, 0.5)
    elif kind == "http.client":
        conn = http.client.HTTPConnection(*url.removeprefix("http://").split(":"))
        for i in range(n):
            body = json.dumps({"track": i, "time": 0.5})
            conn.request("POST", f"/next/{user}", body, {"Content-Type": "application/json"})
            json.loads(conn.getresponse().read())["track"]
        conn.close()
    else:
        with httpx.Client(base_url=url) as c:
            for i in range(n):
                c.post(f"/next/{user}", json={"track": i, "time": 0.5}).json()["track"]


def baseline(kind: str, url: str, requests: int, processes: int) -> float:
    """Requests per second of bare requests from ``processes`` processes."""
    ctx = mp.get_context("spawn")
    per = requests // processes
    procs = [ctx.Process(target=bare_requests, args=(kind, url, per, i)) for i in range(processes)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    # Process start-up (spawn, imports) is inside the time, as it is for the driver.
    return per * processes / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()

    config = load_config()
    started = time.perf_counter()
    world = generate_world(config)
    print(f"world: {len(world.catalog):,} tracks in {time.perf_counter() - started:.1f} s")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = mp.get_context("spawn").Process(target=serve, args=(port, len(world.catalog)))
    server.start()
    try:
        wait_for(port)
        with tempfile.TemporaryDirectory() as tmp:
            save_world(world, tmp)
            summary = drive(url, tmp, world, args.sessions, args.processes, seed=1)
        if summary.failed_sessions:
            raise SystemExit(f"{summary.failed_sessions} sessions failed: {summary.errors[:1]}")
        rows = {
            k: baseline(k, url, summary.requests, args.processes)
            for k in ("ours", "http.client", "httpx")
        }
    finally:
        server.terminate()
        server.join()

    ours = rows["ours"]
    per_session = summary.requests / summary.sessions
    print(
        f"\n{args.sessions:,} sessions, {args.processes} processes, "
        f"{per_session:.2f} requests a session, one uvicorn worker\n"
    )
    print(f"{'':32} {'requests/s':>11} {'sessions/min':>13} {'ratio':>7}")
    for kind, rps in rows.items():
        print(
            f"{'baseline: bare /next, ' + kind:32} {rps:11,.0f} "
            f"{60 * rps / per_session:13,.0f} {rps / ours:7.2f}"
        )
    print(
        f"{'driver: drive()':32} {summary.requests_per_s:11,.0f} "
        f"{summary.sessions_per_min:13,.0f} {summary.requests_per_s / ours:7.2f}"
    )


if __name__ == "__main__":
    main()
