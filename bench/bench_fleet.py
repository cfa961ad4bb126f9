"""Benchmark the fleet: /next throughput through HAProxy with N = 1, 2, 3 API instances
against one instance without a load balancer, and the cost of the "acks" durability mode
against the default, all in one run.

One embedded stack with three API instances (no stream worker, no trainer: the two cores
measure the API) and three HAProxy processes in front of the first 1, 2 and 3 instances;
the baseline is wrk straight at the first instance. Then a second stack, one instance in the
"acks" mode, against the first instance again (the default mode). Rounds alternate the
configurations so drift on a shared machine hits them alike. Prints req/s at saturation and
ratios to the baseline, and p50/p99 at half of the default's saturation for both modes.

    python bench/bench_fleet.py [--seconds 6] [--rounds 2] [--connections 32]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench_api import wrk, wrk_args
from rich.console import Console
from rich.table import Table

from botify.settings import Settings
from botify_cli.load_balancer import LoadBalancerPlan, haproxy_process
from botify_cli.processes import free_port
from botify_cli.stack import EmbeddedStack

console = Console()
INSTANCES = 3


def main() -> int:
    args = wrk_args(__doc__, 32)
    for tool, deb in (("wrk", "wrk"), ("haproxy", "haproxy")):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin") is None:
            console.print(f"[red]error:[/] {tool} is not installed (apt-get install {deb})")
            return 2
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        with EmbeddedStack(
            settings, Path(tmp) / "fleet", api_instances=INSTANCES, stream_workers=0
        ) as stack:
            assert stack.endpoints is not None
            direct = stack.endpoints.instances[0]
            names = stack.api_names()
            balancers = []
            for n in range(1, INSTANCES + 1):
                plan = LoadBalancerPlan(
                    port=free_port(),
                    stats_port=free_port(),
                    instances=tuple(
                        (name, int(url.rsplit(":", 1)[1]))
                        for name, url in zip(names[:n], stack.endpoints.instances[:n], strict=True)
                    ),
                )
                run_dir = Path(tmp) / f"lb-{n}"
                run_dir.mkdir()
                balancers.append(
                    (n, plan.url, haproxy_process(plan, settings.load_balancer, run_dir, {}, 30))
                )
            for _, _, proc in balancers:
                proc.start()
            try:
                console.print(f"fleet up: {INSTANCES} instances; warming up…")
                for _, url, _ in balancers:
                    wrk(url, 2, args.connections, trivial=False)
                fleet: dict[str, list[float]] = {"direct": []}
                for r in range(args.rounds):
                    console.print(f"fleet round {r + 1}/{args.rounds}")
                    fleet["direct"].append(wrk(direct, args.seconds, args.connections, False).rps)
                    for n, url, _ in balancers:
                        rps = wrk(url, args.seconds, args.connections, False).rps
                        fleet.setdefault(f"N={n}", []).append(rps)
            finally:
                for _, _, proc in balancers:
                    proc.stop()
            # The durability modes: this stack's first instance (buffer) against an acks one.
            with EmbeddedStack(
                settings,
                Path(tmp) / "acks",
                stream_workers=0,
                extra_env={"BOTIFY_API__DURABILITY": "acks"},
            ) as acked:
                assert acked.endpoints is not None
                acks_url = acked.endpoints.api
                wrk(acks_url, 2, args.connections, trivial=False)
                sat: dict[str, list[float]] = {"buffer": [], "acks": []}
                for r in range(args.rounds):
                    console.print(f"durability round {r + 1}/{args.rounds}")
                    sat["buffer"].append(wrk(direct, args.seconds, args.connections, False).rps)
                    sat["acks"].append(wrk(acks_url, args.seconds, args.connections, False).rps)
                # Both at the same offered load: half of the default's saturation.
                target = statistics.median(sat["buffer"]) / 2
                conns = 8
                delay = conns * 1000 / target
                console.print(f"half load: ~{target:.0f} req/s on both")
                half = {
                    "buffer": wrk(direct, args.seconds, conns, False, delay_ms=delay),
                    "acks": wrk(acks_url, args.seconds, conns, False, delay_ms=delay),
                }

    base = statistics.median(fleet["direct"])
    table = Table(title=f"/next req/s at saturation ({args.connections} connections, 2 cores)")
    for col in ("", "req/s", "× one instance, no LB"):
        table.add_column(col, justify="right")
    table.add_row("one instance, no LB (baseline)", f"{base:,.0f}", "1.00")
    for n in range(1, INSTANCES + 1):
        rps = statistics.median(fleet[f"N={n}"])
        table.add_row(f"HAProxy + {n} instance(s)", f"{rps:,.0f}", f"{rps / base:.2f}")
    console.print(table)

    sb, sa = statistics.median(sat["buffer"]), statistics.median(sat["acks"])
    hb, ha = half["buffer"], half["acks"]
    durability = Table(title="durability: acks vs the default (buffer), one instance")
    for col in ("", "buffer (baseline)", "acks", "ratio"):
        durability.add_column(col, justify="right")
    durability.add_row("saturation req/s", f"{sb:,.0f}", f"{sa:,.0f}", f"{sa / sb:.2f}")
    durability.add_row("half-load req/s", f"{hb.rps:,.0f}", f"{ha.rps:,.0f}", "")
    for label, b, a in (
        ("half-load p50 ms", hb.p50_ms, ha.p50_ms),
        ("half-load p99 ms", hb.p99_ms, ha.p99_ms),
    ):
        durability.add_row(label, f"{b:.2f}", f"{a:.2f}", f"{a / b:.2f}")
    durability.add_row("errors (non-2xx, socket)", str(hb.errors), str(ha.errors), "")
    console.print(durability)
    return 0


if __name__ == "__main__":
    sys.exit(main())
