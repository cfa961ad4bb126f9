"""How many events per second one stream worker carries: ``bench_stream.py --throughput`` and
``--scaling``.

Capacity: a backlog of listen events (sessions of a fixed pool of users, seeded) is put on a
topic, then drained by a bare consumer that only decodes (confluent-kafka, the platform's
own client, ``decode_listen_event`` per record), and by stream workers with and without
training examples (with them, also with ``stream.pipeline`` off: one batch at a time), one
after the other on the same records (each worker run on an empty
Redis, in its own consumer group). The drain rate counts from a consumer's first record to
its last, so group joins are left out. CPU seconds of the consumer, Redis and the broker are
read from /proc (psutil) over the same span.

Sustained: a worker with examples is fed at fixed rates, stepping up, each for a few seconds.
A rate holds when the worker has applied every event within ``CATCH_UP_S`` of the last one
being sent and the p99 delay of probe events (a fresh user each, watched through Redis
keyspace notifications) is at most ``HOLD_P99_MS``. The highest rate that holds is the
sustained rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import redis
from confluent_kafka import Consumer
from rich.console import Console
from rich.table import Table

from botify import keys
from botify.catalog import Track, write_catalog
from botify.events import decode_listen_event, encode_listen_event, make_listen_event
from botify.kafka import ListenPublisher, consumer_config, ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import Child, broker_process, free_port, redis_process

console = Console(width=120)
BARE_COUNTER = "bench:bare:decoded"
FAUST_COUNTER = "bench:faust:decoded"  # faust_consumer.BENCH_COUNTER
PROBE_FIRST_USER = 1_000_000_000  # ten digits: the keyspace pattern below matches only these
PROBE_PATTERN = "__keyspace@0__:" + keys.user_state(0).replace(":0:", ":1?????????:")
PROBE_EVERY = 50  # one probe event per this many
DRAIN_TIMEOUT_S = 300.0
JOIN_TIMEOUT_S = 60.0
CATCH_UP_S = 2.0
HOLD_P99_MS = 1000.0
TICK_S = 0.01  # the feeder sends a tick's worth of events at a time
TRACKS = 50_000  # the events' track ids are drawn below this


def catalog_of(tracks: int, directory: Path) -> Path:
    """A catalog of track ids 0 .. tracks - 1, written once into ``directory``."""
    path = directory / f"catalog-{tracks}.jsonl"
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        write_catalog((Track(t, f"Artist {t % 997}", f"Track {t}") for t in range(tracks)), path)
    return path


@dataclass
class Stack:
    bootstrap: str
    redis_url: str
    logs: Path
    pids: dict[str, int]

    def env(self, topic: str, group: str, **extra: str) -> dict[str, str]:
        return {
            # The workers check every event's tracks against it: all the ones sent are in.
            "BOTIFY_CATALOG__PATH": str(catalog_of(TRACKS, self.logs)),
            **os.environ,
            "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "BOTIFY_KAFKA__LISTENS_TOPIC": topic,
            "BOTIFY_REDIS__URL": self.redis_url,
            "BOTIFY_STREAM__APP_ID": group,
            # Several workers at once: each serves its metrics on a port of its own.
            "BOTIFY_METRICS__STREAM_PORT": "0",
            "BOTIFY_RUN_DIR": str(self.logs / "runs"),
            **extra,
        }


@contextmanager
def embedded_stack() -> Iterator[Stack]:
    """A Tansu broker and a Redis on free loopback ports, for the length of the block."""
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        broker_port, redis_port = free_port(), free_port()
        broker = broker_process(broker_port, logs).start()
        try:
            server = redis_process(redis_port, logs).start()
            try:
                assert broker.process is not None and server.process is not None
                yield Stack(
                    f"127.0.0.1:{broker_port}",
                    f"redis://127.0.0.1:{redis_port}/0",
                    logs,
                    {"broker": broker.process.pid, "redis": server.process.pid},
                )
            finally:
                server.stop()
        finally:
            broker.stop()


def session_events(n: int, users: int, seed: int, first_timestamp: int = 0) -> list[bytes]:
    """``n`` encoded listen events of ``users`` users in sessions (a ``last`` ends about one
    in ten), user ids and tracks drawn from a seeded generator."""
    rng = np.random.default_rng(seed)
    who = rng.integers(0, users, n)
    tracks = rng.integers(0, TRACKS, n + 1)
    times = rng.random(n).round(2)
    ends = rng.random(n) < 0.1
    out = []
    for i in range(n):
        last = bool(ends[i])
        event = make_listen_event(
            message="last" if last else "next",
            timestamp=first_timestamp + i,
            user=int(who[i]),
            track=int(tracks[i]),
            time=float(times[i]),
            recommendation=None if last else int(tracks[i + 1]),
            latency=0.0005,
            recommender="random",
        )
        out.append(encode_listen_event(event))
    return out


def user_of(value: bytes) -> bytes:
    return str(decode_listen_event(value).user).encode()


def produce(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    publisher = ListenPublisher(kafka, "bench")
    try:
        for i, value in enumerate(values):
            publisher.publish_raw(topic, user_of(value), value)
            if i % 20_000 == 19_999:  # the producer's local queue is bounded
                assert publisher.flush(60) == 0, "the broker did not take the backlog"
        assert publisher.flush(60) == 0, "the broker did not take the backlog"
    finally:
        publisher.close()


MACHINE = 0  # the key of the whole machine's busy CPU in the maps below


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (its threads, not its children), so far; ``MACHINE``:
    of every process on the machine (the machine is shared: the rest is other work)."""
    if pid == MACHINE:
        t = psutil.cpu_times()
        return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
    try:
        return sum(psutil.Process(pid).cpu_times()[:2])
    except psutil.NoSuchProcess:
        return 0.0


def main_thread_times(pid: int) -> tuple[float, float]:
    """Seconds a process's main thread has run and has waited, runnable, for a core (Linux
    schedstat). Over a span, the rest of the span's wall time is what it spent blocked:
    waiting for the broker or Redis, whatever else the machine runs."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            ran, runnable, _ = f.read().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(ran) / 1e9, int(runnable) / 1e9


def others(cpu: dict[str, float]) -> float:
    """The machine's CPU used by work other than the processes in ``cpu``."""
    return max(0.0, cpu["machine"] - sum(v for k, v in cpu.items() if k != "machine"))


@dataclass
class Drain:
    name: str
    events: int
    seconds: float
    cpu: dict[str, float]  # process -> CPU seconds over the drain
    # Seconds the consumers' main threads were blocked (neither running nor runnable).
    blocked: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def worker_progress(r: redis.Redis) -> int:
    counts = r.mget(keys.STREAM_APPLIED, keys.STREAM_DUPLICATES, keys.STREAM_DEAD_LETTERS)
    return sum(int(c or 0) for c in counts)


def bare_progress(r: redis.Redis) -> int:
    return int(r.get(BARE_COUNTER) or 0)


def faust_progress(r: redis.Redis) -> int:
    return int(r.get(FAUST_COUNTER) or 0)


def faust_command() -> list[str]:
    script = Path(__file__).resolve().parent / "faust_consumer.py"
    return [sys.executable, str(script), "worker", "--loglevel", "warn"]


def drain(
    stack: Stack,
    name: str,
    commands: list[list[str]],
    env: dict[str, str],
    n: int,
    progress: Callable[[redis.Redis], int],
) -> Drain:
    """Start ``commands`` (consumers of one group), time them through ``n`` records (from the
    first one they take), stop them."""
    r = redis.Redis.from_url(stack.redis_url)
    r.flushdb()
    children = []
    try:
        for i, command in enumerate(commands):
            log = (stack.logs / f"{name}-{i}.log").open("w")
            children.append(Child(command, envvars=env, stdout=log, stderr=log, timeout=30).start())
        pids = {f"consumer {i}": c.process.pid for i, c in enumerate(children) if c.process}
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while (done := progress(r)) == 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: no record consumed in {JOIN_TIMEOUT_S:.0f} s")
            time.sleep(0.005)
        start, first = time.perf_counter(), done
        watched = {**stack.pids, **pids, "bench": os.getpid(), "machine": MACHINE}
        before = {k: cpu_seconds(p) for k, p in watched.items()}
        threads_before = [main_thread_times(p) for p in pids.values()]
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while (done := progress(r)) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: {done:,} of {n:,} records after {DRAIN_TIMEOUT_S} s")
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        cpu = {k: cpu_seconds(p) - before[k] for k, p in watched.items()}
        blocked = sum(
            seconds - (ran - ran0) - (runnable - runnable0)
            for (ran0, runnable0), (ran, runnable) in zip(
                threads_before, [main_thread_times(p) for p in pids.values()], strict=True
            )
        )
    finally:
        for child in children:
            child.stop()
        r.close()
    workers = sum(v for k, v in cpu.items() if k.startswith("consumer"))
    return Drain(
        name,
        n - first,
        seconds,
        {
            "consumer": workers,
            "redis": cpu["redis"],
            "broker": cpu["broker"],
            "others": others(cpu),
        },
        max(0.0, blocked),
    )


def worker_command() -> list[str]:
    return [sys.executable, "-m", "services.stream"]


def bare_command(stack: Stack, topic: str, group: str) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve().parent / "bench_stream.py"),
        "--bare-consumer",
        f"{stack.bootstrap},{topic},{group},{stack.redis_url}",
    ]


def bare_consumer(spec: str) -> int:
    """The baseline: consume and decode each record, count them in Redis, nothing else.
    Runs until SIGTERM (bounded by the parent's drain timeout)."""
    bootstrap, topic, group, url = spec.split(",")
    consumer = Consumer(
        consumer_config(KafkaSettings(bootstrap_servers=bootstrap), group, "bench")
        | {"fetch.wait.max.ms": 5, "enable.auto.commit": True}
    )
    consumer.subscribe([topic])
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + JOIN_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, 0.05)
            decoded = 0
            for msg in batch:
                if not msg.error():
                    decode_listen_event(msg.value())
                    decoded += 1
            if decoded:
                r.incrby(BARE_COUNTER, decoded)
    finally:
        consumer.close()
    return 0


def cpu_table(title: str, drains: list[Drain], base: Drain) -> Table:
    table = Table(title=title)
    ratio = f"ratio to {base.name}"
    for col in ("consumer", "events/s", ratio, "consumer CPU", "Redis CPU", "broker CPU"):
        table.add_column(col, justify="right")
    # Wall time the consumers' loops spent neither running nor waiting for a core: waiting
    # for the broker or Redis. Unlike the rate, it barely moves with what else the machine
    # runs, so it compares consumers across busy and quiet runs.
    table.add_column("blocked on I/O", justify="right")
    table.add_column("other work", justify="right")
    for d in drains:
        # CPU as µs per event (and share of one core over the drain).
        cells = [
            f"{d.cpu[k] / d.events * 1e6:.1f} µs/ev ({d.cpu[k] / d.seconds:.0%})"
            for k in ("consumer", "redis", "broker")
        ]
        # What else the shared machine ran meanwhile (cores busy).
        busy = f"{d.cpu['others'] / d.seconds:.0%}"
        blocked = f"{d.blocked / d.events * 1e6:.1f} µs/ev ({d.blocked / d.seconds:.0%})"
        table.add_row(d.name, f"{d.rate:,.0f}", f"{d.rate / base.rate:.2f}", *cells, blocked, busy)
    return table


@dataclass
class Step:
    rate: float
    achieved: float
    p50_ms: float
    p99_ms: float
    max_lag: int
    caught_up_s: float | None
    cpu: dict[str, float]  # share of one core over the step: worker, Redis, broker, feeder

    @property
    def holds(self) -> bool:
        return self.caught_up_s is not None and self.p99_ms <= HOLD_P99_MS


def watch_probes(r: redis.Redis, seen: dict[int, float], stop: threading.Event) -> None:
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(PROBE_PATTERN)
    try:
        while not stop.is_set():
            msg = pubsub.get_message(timeout=0.05)
            if msg is not None:
                user = int(msg["channel"].rsplit(b":", 2)[1])
                seen.setdefault(user, time.perf_counter())
    finally:
        pubsub.close()


class Feeder:
    """Sends listen events at a fixed rate, with a probe (a fresh user) every PROBE_EVERY."""

    def __init__(self, kafka: KafkaSettings, topic: str, pool: list[bytes]) -> None:
        self.publisher = ListenPublisher(kafka, "bench")
        self.topic, self.pool = topic, [(user_of(v), v) for v in pool]
        self.sent = 0
        self.probes: dict[int, float] = {}
        self.next_probe = PROBE_FIRST_USER

    def probe(self) -> tuple[bytes, bytes, int]:
        user, self.next_probe = self.next_probe, self.next_probe + 1
        event = make_listen_event(
            message="next",
            timestamp=int(time.time() * 1000),
            user=user,
            track=1,
            time=0.5,
            recommendation=2,
            latency=0.0005,
            recommender="random",
        )
        return str(user).encode(), encode_listen_event(event), user

    def run(self, rate: float, seconds: float) -> float:
        """Send ``rate`` × ``seconds`` events in ticks; returns the achieved rate."""
        n = int(rate * seconds)
        start, i = time.perf_counter(), 0
        while i < n:
            upto = min(n, int((time.perf_counter() - start) * rate) + 1)
            if upto <= i:
                time.sleep(TICK_S)
                continue
            for j in range(self.sent, self.sent + upto - i):
                if j % PROBE_EVERY == 0:
                    key, value, user = self.probe()
                    self.publisher.publish_raw(self.topic, key, value)
                    self.probes[user] = time.perf_counter()
                else:
                    key, value = self.pool[j % len(self.pool)]
                    self.publisher.publish_raw(self.topic, key, value)
            self.sent += upto - i
            i = upto
        return n / (time.perf_counter() - start)

    def close(self) -> None:
        self.publisher.close()


def sustained(
    stack: Stack, topic: str, rates: list[float], seconds: float, env: dict[str, str]
) -> list[Step]:
    """Feed one worker at each rate in turn until one does not hold."""
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, listens_topic=topic)
    r = redis.Redis.from_url(stack.redis_url)
    r.flushdb()
    r.config_set("notify-keyspace-events", "Kh")
    seen: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_probes, args=(r, seen, stop))
    watcher.start()
    # Replayed in the steps: a pool of session events; the worker's dedupe by position does
    # not apply (each send is a new record), so every event is applied.
    feeder = Feeder(kafka, topic, session_events(20_000, 10_000, seed=2))
    log = (stack.logs / "sustained.log").open("w")
    worker = Child(worker_command(), envvars=env, stdout=log, stderr=log, timeout=30).start()
    steps: list[Step] = []
    assert worker.process is not None
    # The feeder is this process: its producer and pacing, and the probe watcher.
    pids = {"worker": worker.process.pid, **stack.pids, "feeder": os.getpid(), "machine": MACHINE}
    try:
        feeder.run(rates[0] / 4, 1.0)  # the join, then the first batches: start-up costs
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while worker_progress(r) < feeder.sent:
            if time.monotonic() > deadline:
                raise SystemExit("sustained: the worker did not start")
            time.sleep(0.05)
        for rate in rates:
            first_probe = feeder.next_probe
            lags: list[int] = []
            sampling = threading.Event()

            def sample(lags: list[int] = lags, done: threading.Event = sampling) -> None:
                while not done.wait(0.1):
                    lags.append(feeder.sent - worker_progress(r))

            sampler = threading.Thread(target=sample)
            sampler.start()
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            achieved = feeder.run(rate, seconds)
            sent_at = time.perf_counter()
            cpu = {k: (cpu_seconds(p) - before[k]) / seconds for k, p in pids.items()}
            cpu["others"] = others(cpu)
            caught: float | None = None
            while time.perf_counter() - sent_at < CATCH_UP_S:
                if worker_progress(r) >= feeder.sent:
                    caught = time.perf_counter() - sent_at
                    break
                time.sleep(0.01)
            sampling.set()
            sampler.join(5)
            delays = [
                (seen[u] - feeder.probes[u]) * 1000
                for u in range(first_probe, feeder.next_probe)
                if u in seen
            ]
            missing = feeder.next_probe - first_probe - len(delays)
            p99 = float(np.percentile(delays, 99)) if delays and not missing else float("inf")
            p50 = float(np.percentile(delays, 50)) if delays else float("inf")
            steps.append(Step(rate, achieved, p50, p99, max(lags, default=0), caught, cpu))
            console.print(
                f"  {rate:,.0f}/s: achieved {achieved:,.0f}/s, p99 {p99:,.0f} ms, "
                f"max lag {max(lags, default=0):,}, caught up "
                + ("no" if caught is None else f"{caught:.2f} s")
            )
            if not steps[-1].holds:
                # Let it drain before stopping, so the broker is not left mid-fetch.
                deadline = time.monotonic() + 60
                while worker_progress(r) < feeder.sent and time.monotonic() < deadline:
                    time.sleep(0.1)
                break
    finally:
        stop.set()
        watcher.join(5)
        worker.stop()
        feeder.close()
        r.close()
    return steps


def throughput(args: argparse.Namespace) -> int:
    with embedded_stack() as stack:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap)
        backlog, live = "bench.backlog.v1", "bench.live.v1"
        for topic in (backlog, live):
            ensure_topics(kafka.model_copy(update={"listens_topic": topic}))
        console.print(f"putting {args.events:,} events of {args.users:,} users on {backlog}")
        produce(kafka, backlog, session_events(args.events, args.users, seed=args.seed))

        def group() -> str:
            return f"bench-{uuid.uuid4().hex[:8]}"

        console.print(
            "draining it: bare consumer, faust decoding only, worker with examples (pipelined "
            "and not), worker without"
        )
        bare = drain(
            stack, "bare consumer", [bare_command(stack, backlog, group())],
            dict(os.environ), args.events, bare_progress,
        )  # fmt: skip
        faust_only = drain(
            stack, "faust, decode only", [faust_command()],
            stack.env(backlog, group()), args.events, faust_progress,
        )  # fmt: skip
        with_examples = drain(
            stack, "worker, examples on", [worker_command()],
            stack.env(backlog, group()), args.events, worker_progress,
        )  # fmt: skip
        sequential = drain(
            stack, "worker, examples on, not pipelined", [worker_command()],
            stack.env(backlog, group(), BOTIFY_STREAM__PIPELINE="false"),
            args.events, worker_progress,
        )  # fmt: skip
        without = drain(
            stack, "worker, examples off", [worker_command()],
            stack.env(backlog, group(), BOTIFY_STREAM__EXAMPLES="false"),
            args.events, worker_progress,
        )  # fmt: skip
        console.print(
            cpu_table(
                f"capacity: draining {args.events:,} events of {args.users:,} users "
                f"(CPU: µs per event and share of one core; {os.cpu_count()} cores)",
                [bare, faust_only, with_examples, sequential, without],
                bare,
            )
        )
        console.print(
            f"pipelined commits (a batch's commits in flight while the next one folds) against "
            f"one batch at a time, same run: drain {with_examples.rate / sequential.rate:.2f}×, "
            f"main thread blocked on I/O {sequential.blocked / sequential.events * 1e6:.1f} → "
            f"{with_examples.blocked / with_examples.events * 1e6:.1f} µs per event"
        )
        rates = [float(r) for r in args.rates.split(",")]
        console.print(f"sustained: one worker, examples on, {args.step_seconds:.0f} s per rate")
        steps = sustained(stack, live, rates, args.step_seconds, stack.env(live, group()))
    table = Table(title="sustained rate (one worker, examples on)")
    cpus = ("worker", "redis", "broker", "feeder", "others")
    for col in ("target/s", "sent/s", "p50 ms", "p99 ms", "max lag", "caught up", "holds"):
        table.add_column(col, justify="right")
    for name in cpus:
        table.add_column(f"{name} CPU", justify="right")
    for s in steps:
        table.add_row(
            f"{s.rate:,.0f}",
            f"{s.achieved:,.0f}",
            f"{s.p50_ms:,.0f}",
            f"{s.p99_ms:,.0f}",
            f"{s.max_lag:,}",
            "no" if s.caught_up_s is None else f"{s.caught_up_s:.2f} s",
            "yes" if s.holds else "no",
            *(f"{s.cpu[k]:.0%}" for k in cpus),
        )
    console.print(table)
    held = [s.rate for s in steps if s.holds]
    best = max(held, default=0.0)
    console.print(
        f"highest sustained rate: {best:,.0f} events/s "
        f"({best / bare.rate:.2f} of the bare consumer's {bare.rate:,.0f}/s drain); "
        f"a rate holds when every event is applied within {CATCH_UP_S:.0f} s of the last "
        f"send and p99 ≤ {HOLD_P99_MS:.0f} ms. Load average {os.getloadavg()[0]:.1f}."
    )
    return 0


def scaling(args: argparse.Namespace) -> int:
    with embedded_stack() as stack:
        kafka = KafkaSettings(bootstrap_servers=stack.bootstrap)
        topic = "bench.backlog.v1"
        ensure_topics(kafka.model_copy(update={"listens_topic": topic}))
        console.print(f"putting {args.events:,} events of {args.users:,} users on {topic}")
        produce(kafka, topic, session_events(args.events, args.users, seed=args.seed))
        drains = []
        for workers in (1, 2, 4):
            group = f"bench-{uuid.uuid4().hex[:8]}"
            console.print(f"draining it with {workers} worker(s)")
            drains.append(
                drain(
                    stack,
                    f"{workers} worker(s)",
                    [worker_command()] * workers,
                    stack.env(topic, group),
                    args.events,
                    worker_progress,
                )  # fmt: skip
            )
    console.print(
        cpu_table(
            f"scaling: {args.events:,} events, examples on, {kafka.partitions} partitions, "
            f"{os.cpu_count()} cores (ratio: to one worker; CPU: all workers together)",
            drains,
            drains[0],
        )
    )
    return 0
