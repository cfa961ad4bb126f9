"""Benchmark /next on one API worker against the same server's trivial endpoint.

Starts the embedded stack (broker, Redis, one API worker; no stream worker, so that the two
cores measure the API rather than the API and the processor of its events), drives it with
wrk from loopback, and prints throughput at saturation and p50/p99 at half of saturation,
for GET / (the baseline) and for botify traffic on /next (+1 /last in 8), as ratios.
Runs alternate baseline and /next so drift on a shared machine hits both alike.

It also prices the per-request Prometheus metrics: two more API processes on the same
broker and Redis, alike but for ``BOTIFY_METRICS__REQUESTS`` (on and off), take /next at
saturation in alternating runs, the order swapped each round (target: cost under 5 %).

    python bench/bench_api.py [--seconds 6] [--rounds 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from botify.settings import Settings
from botify_cli.processes import HTTPChild, free_port, http_child
from botify_cli.stack import EmbeddedStack

LUA = Path(__file__).with_name("next.lua")
console = Console()


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _ms(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if found is None:  # wrk prints e.g. "-nanus" when no request completed
        raise RuntimeError(f"wrk reported no usable latency: {text!r}")
    value, unit = found.groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def wrk(
    url: str, seconds: float, connections: int, trivial: bool, delay_ms: float = 0
) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    cmd += ["-s", str(LUA), url]
    env = {
        "BENCH_DELAY_MS": str(delay_ms),
        "BENCH_TRACKS": "2000",
        "BENCH_MODE": "trivial" if trivial else "next",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 30)
    out = done.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or out.strip()}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(bad.group(1)) if bad else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return WrkResult(rps, p50, p99, errors)


def extra_api(stack: EmbeddedStack, log_dir: Path, **env: str) -> tuple[str, HTTPChild]:
    """Another API process on the stack's broker and Redis, with ``env`` on top."""
    assert stack.endpoints is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full = {**os.environ, **stack.endpoints.env(), "BOTIFY_API__PORT": str(port), **env}
    command = [sys.executable, "-m", "services.api"]
    child = http_child(command, f"{url}/health", log_dir, f"api-{port}", 60, full)
    child.start()
    return url, child


def wrk_args(doc: str, connections: int) -> argparse.Namespace:
    """The options every wrk benchmark takes: --seconds, --rounds, --connections."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=connections)
    return parser.parse_args()


def main() -> int:
    args = wrk_args(__doc__, 16)
    if shutil.which("wrk") is None:
        console.print("[red]error:[/] wrk is not installed (apt-get install wrk)")
        return 2
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedStack(Settings(), Path(tmp), stream_workers=0) as stack,
    ):
        api = stack.endpoints.api  # type: ignore[union-attr]
        console.print(f"stack up: API {api} (one worker); warming up…")
        wrk(api, 2, args.connections, trivial=False)
        base, nxt = [], []
        for r in range(args.rounds):
            console.print(f"round {r + 1}/{args.rounds}: saturation")
            base.append(wrk(api, args.seconds, args.connections, trivial=True))
            nxt.append(wrk(api, args.seconds, args.connections, trivial=False))
        sat_base = statistics.median(x.rps for x in base)
        sat_next = statistics.median(x.rps for x in nxt)
        # Half of saturation, paced per connection: rate ≈ connections / delay.
        conns = 8
        half = {}
        for name, target, trivial in (
            ("GET /", sat_base / 2, True),
            ("/next", sat_next / 2, False),
        ):
            console.print(f"half saturation on {name}: ~{target:.0f} req/s")
            half[name] = wrk(api, args.seconds, conns, trivial, delay_ms=conns * 1000 / target)
        on_url, on = extra_api(stack, Path(tmp), BOTIFY_METRICS__REQUESTS="true")
        off_url, off = extra_api(stack, Path(tmp), BOTIFY_METRICS__REQUESTS="false")
        runs: dict[str, list[WrkResult]] = {on_url: [], off_url: []}
        try:
            for url in runs:
                wrk(url, 2, args.connections, trivial=False)
            for r in range(args.rounds):
                console.print(f"round {r + 1}/{args.rounds}: /next with and without metrics")
                for url in (on_url, off_url) if r % 2 == 0 else (off_url, on_url):
                    runs[url].append(wrk(url, args.seconds, args.connections, trivial=False))
        finally:
            on.stop()
            off.stop()
        with_metrics = statistics.median(x.rps for x in runs[on_url])
        without = statistics.median(x.rps for x in runs[off_url])
    table = Table(title="/next on one API worker vs the same server's trivial endpoint")
    for col in ("", "GET / (baseline)", "/next + /last", "ratio"):
        table.add_column(col, justify="right")
    table.add_row(
        "saturation req/s", f"{sat_base:,.0f}", f"{sat_next:,.0f}", f"{sat_next / sat_base:.2f}"
    )
    hb, hn = half["GET /"], half["/next"]
    table.add_row("half-load req/s", f"{hb.rps:,.0f}", f"{hn.rps:,.0f}", "")
    table.add_row(
        "half-load p50 ms", f"{hb.p50_ms:.2f}", f"{hn.p50_ms:.2f}", f"{hn.p50_ms / hb.p50_ms:.2f}"
    )
    table.add_row(
        "half-load p99 ms", f"{hb.p99_ms:.2f}", f"{hn.p99_ms:.2f}", f"{hn.p99_ms / hb.p99_ms:.2f}"
    )
    errors = sum(x.errors for x in nxt) + hn.errors
    table.add_row(
        "errors (non-2xx, socket)", str(sum(x.errors for x in base) + hb.errors), str(errors), ""
    )
    console.print(table)
    console.print("targets: saturation ratio ≥ 0.5; /next p99 ≤ 10 ms at half of saturation")
    cost = Table(title="per-request Prometheus metrics on /next (two API processes, one stack)")
    for col in ("", "metrics off (baseline)", "metrics on", "ratio", "cost"):
        cost.add_column(col, justify="right")
    cost.add_row(
        "saturation req/s",
        f"{without:,.0f}",
        f"{with_metrics:,.0f}",
        f"{with_metrics / without:.3f}",
        f"{1 - with_metrics / without:.1%}",
    )
    console.print(cost)
    console.print("target: metrics cost under 5 % of /next saturation throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
