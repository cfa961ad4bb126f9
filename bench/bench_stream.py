"""Benchmark the stream processor: delay from publishing a listen event to its Redis state.

Starts the embedded stack (broker, Redis, one stream worker), publishes events at a fixed
rate through the API's own publisher (so its batching counts), one new user per event, and
polls Redis for each user's state. Baseline measured in the same run: the delay to a bare
confluent-kafka consumer reading the same records. Prints p50/p99 of both and their ratio.

    python bench/bench_stream.py [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis
from confluent_kafka import Consumer
from rich.console import Console
from rich.table import Table

from botify import keys
from botify.events import make_listen_event
from botify.kafka import ListenPublisher
from botify.settings import KafkaSettings, Settings
from botify_cli.stack import EmbeddedStack

console = Console()
USER_BASE = 10_000_000  # fresh users, so each event's state appears exactly once
SAMPLE = 10
WARMUP_BASE = 1_000_000


def consume_baseline(
    bootstrap: str, topic: str, sent: dict[int, float], out: dict[int, float], stop: threading.Event
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-baseline",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 5,
        }
    )
    consumer.subscribe([topic])
    try:
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is None or msg.error():
                continue
            user = int(msg.key())
            out[user] = time.perf_counter()
    finally:
        consumer.close()


def poll_state(url: str, watch: list[int], out: dict[int, float], stop: threading.Event) -> None:
    """Polls the state of the users in `watch` (appended by the publisher) until seen."""
    r = redis.Redis.from_url(url)
    pending: list[int] = []
    taken = 0
    while not stop.is_set():
        fresh, taken = watch[taken:], len(watch)
        pending += fresh
        if pending:
            pipe = r.pipeline(transaction=False)
            for u in pending:
                pipe.exists(keys.user_state(u))
            flags = pipe.execute()
            now = time.perf_counter()
            for u, present in zip(pending, flags, strict=True):
                if present:
                    out[u] = now
            pending = [u for u in pending if u not in out]
        time.sleep(0.002)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--debug", action="store_true", help="list slow deliveries")
    args = parser.parse_args()
    n = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(Settings(), Path(tmp)) as stack:
        ep = stack.endpoints
        assert ep is not None
        kafka = KafkaSettings(bootstrap_servers=ep.broker)
        sent: dict[int, float] = {}
        consumed: dict[int, float] = {}
        stated: dict[int, float] = {}
        watch: list[int] = []
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=consume_baseline, args=(ep.broker, kafka.listens_topic, sent, consumed, stop)
            ),
            threading.Thread(target=poll_state, args=(ep.redis, watch, stated, stop)),
        ]
        for t in threads:
            t.start()
        publisher = ListenPublisher(kafka)

        def run(first_user: int, count: int) -> float:
            """Publish `count` events at the target rate, one new user each."""
            start = time.perf_counter()
            for i in range(count):
                due = start + i / args.rate
                while (now := time.perf_counter()) < due:
                    time.sleep(min(0.001, due - now))
                event = make_listen_event(
                    message="next",
                    timestamp=int(time.time() * 1000),
                    user=first_user + i,
                    track=i % 2000,
                    time=0.5,
                    recommendation=(i + 1) % 2000,
                    latency=0.0005,
                    recommender="random",
                )
                publisher.publish(event)
                sent[first_user + i] = time.perf_counter()
                # Every SAMPLE-th event is watched: polling them all would load the machine
                # more than the system under test does.
                if (first_user + i) % SAMPLE == 0:
                    watch.append(first_user + i)
            return count / (time.perf_counter() - start)

        # Warm up until both consumer groups have joined and settled, then 5 s more at rate:
        # group joins and their first rebalance are start-up costs, not steady-state delay.
        console.print("stack up; warming up until the stream worker and the baseline have joined")
        warm, warm_deadline = 0, time.monotonic() + 60
        while time.monotonic() < warm_deadline:
            run(WARMUP_BASE + warm * 100, 100)
            warm += 1
            if any(u < USER_BASE for u in consumed) and any(u < USER_BASE for u in stated):
                break
        run(WARMUP_BASE + warm * 100, int(args.rate * 5))
        console.print(f"measuring {n:,} events at {args.rate:,.0f}/s")
        achieved = run(USER_BASE, n)
        deadline = time.monotonic() + 30

        def measured(seen: dict[int, float]) -> int:
            return sum(1 for u in seen if u >= USER_BASE)

        while (
            measured(stated) < n // SAMPLE or measured(consumed) < n
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()
        publisher.close()

    def pct(done: dict[int, float]) -> tuple[float, float, int]:
        delays = np.array(
            [(done[u] - sent[u]) * 1000 for u in done if u >= USER_BASE and u in sent]
        )
        return float(np.percentile(delays, 50)), float(np.percentile(delays, 99)), len(delays)

    if "--debug" in sys.argv:
        rows = sorted((sent[u], (stated[u] - sent[u]) * 1000) for u in stated if u >= USER_BASE)
        t0 = rows[0][0]
        slow = [(round(t - t0, 2), round(d)) for t, d in rows if d > 200]
        console.print(
            f"slow deliveries (send time s, delay ms): {slow[:10]} … {slow[-10:]} ({len(slow)})"
        )
    b50, b99, bn = pct(consumed)
    s50, s99, sn = pct(stated)
    table = Table(title=f"event → Redis state at {achieved:,.0f} events/s (one stream worker)")
    for col in ("", "bare consumer (baseline)", "stream worker → Redis", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("events timed", f"{bn:,}/{n:,}", f"{sn:,}/{n // SAMPLE:,} (1 in {SAMPLE})", "")
    table.add_row("p50 delay ms", f"{b50:.1f}", f"{s50:.1f}", f"{s50 / b50:.2f}")
    table.add_row("p99 delay ms", f"{b99:.1f}", f"{s99:.1f}", f"{s99 / b99:.2f}")
    console.print(table)
    console.print("target: p99 ≤ 100 ms at 1,000 events/s (includes the producer's linger)")
    return 0 if sn == n // SAMPLE else 1


if __name__ == "__main__":
    sys.exit(main())
