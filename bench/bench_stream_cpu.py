"""CPU per event of the stream worker's own Python, without a broker or Redis: what a shared
machine can still measure steadily, where the sustained rate (``bench_stream.py
--throughput``) needs a quiet one.

A backlog of listen events (``stream_throughput.session_events``: sessions of a pool of
users, seeded) is cut into the worker's batches and run through ``ListenProcessor.submit``
as the worker does (decode, fold, examples, commit commands, metrics), with:

- Redis replaced by the real store's command building and RESP packing
  (``RedisUserStateStore`` over a connection that packs each command with hiredis, answers
  "written" to commits, and answers a seeded ``--stored-share`` of the users' first loads
  with a stored state, a full history, to decode; the others are new users);
- the examples topic by a list (librdkafka's produce is not the worker's Python);
- the metrics by the worker's own ``StreamMetrics``, the catalog check against a set of the
  events' track ids; a seeded ``--experiment-share`` of the users are in a two-arm
  experiment, their events carry it, so the per-arm counting runs;
- the garbage collector tuned as the worker tunes it (``tune_collector`` with the process
  settings' ``stream.gc_threshold``, i.e. ``BOTIFY_STREAM__GC_THRESHOLD``, or
  ``--gc-threshold``), its own time shown apart.

Batches of ``--batch-sizes``: a backlog's (the consume call's limit) and what a worker fed
live at 20,000 events/s takes per 20 ms batch wait (400). Baselines in the same run:
decoding the same records alone (what the bare consumer of ``--throughput`` does per record,
with the worker's decoder), and the same worker folding each user's events one
``apply_listen`` at a time (the path before ``fold_listens``, still its fallback). Prints
process CPU µs per event, and the ratios to both, best of ``--repeat`` runs (a busy machine
only ever adds time).

    python bench/bench_stream_cpu.py [--events 100000] [--users 10000] [--repeat 5]
        [--batch-sizes 2000,400] [--gc-threshold N] [--stored-share 0.5]
        [--experiment-share 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Sequence
from typing import Any

import hiredis
import numpy as np
import orjson
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table
from stream_throughput import TRACKS, session_events

from botify import keys
from botify.events import ListenEvent, ListenRecord, decode_listen_record
from botify.experiments import ExperimentPlan, ExperimentSplit
from botify.settings import Settings
from botify.state import (
    FoldedListens,
    Position,
    StateConfig,
    UserState,
    fold_each,
    fold_listens,
)
from botify.storage.redis import RedisUserStateStore
from services.stream import agents
from services.stream.agents import ListenProcessor, Record
from services.stream.app import tune_collector
from services.stream.metrics import StreamMetrics

console = Console(width=100)
TOPIC = "botify.listens.v1"
SOURCE = "bench"
PLAN = ExperimentPlan((ExperimentSplit("AA", 2),))


class _PackingRedis:
    """The pipelined client's place: packs every command as it would, answers "written",
    and a stored user's state blob to its load."""

    def __init__(self, stored: dict[str, bytes]) -> None:
        self.stored = stored

    async def call_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            hiredis.pack_command(command)
            if command[0] == "EVAL":
                replies.append([1] * (int(command[2]) - 2))
            elif command[0] == "HGET":
                replies.append(self.stored.get(command[1]))
            else:
                replies.append(None)
        return replies

    async def send(self, *commands: tuple[Any, ...]) -> None:
        for command in commands:
            hiredis.pack_command(command)


class _ListSink:
    def __init__(self) -> None:
        self.records = 0

    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        self.records += len(records)

    async def flush(self) -> None:
        return None


class _NoDeadLetters:
    async def send_many(self, records: Sequence[Any]) -> list[str | None]:
        return [None] * len(records)


def with_experiments(values: list[bytes], share: float, seed: int) -> list[bytes]:
    """The events of a seeded ``share`` of the users with their ``PLAN`` arms, as the API
    tags them."""
    rng = np.random.default_rng(seed + 1)
    out, member = [], {}
    for value in values:
        event = orjson.loads(value)
        user = event["user"]
        if user not in member:
            member[user] = bool(rng.random() < share)
        if member[user]:
            event["experiments"] = PLAN.arms(user)
            value = orjson.dumps(event)
        out.append(value)
    return out


def stored_states(users: int, share: float, partitions: int, seed: int) -> dict[str, bytes]:
    """State blobs of a seeded ``share`` of the users, by their keys: a full history, a
    session open, a position before every event of the backlog."""
    rng = np.random.default_rng(seed + 2)
    size = StateConfig().history_size
    stored = {}
    for user in range(users):
        if rng.random() >= share:
            continue
        tracks = rng.integers(0, TRACKS, size)
        times = rng.random(size).round(2)
        state = UserState(
            user,
            history=tuple(int(t) for t in tracks),
            history_times=tuple(float(x) for x in times),
            in_session=True,
            session_start=int(tracks[0]),
            session_tracks=tuple(int(t) for t in tracks[-10:]),
            listens=10 * size,
            sessions=9,
            position=Position(user % partitions, -1, SOURCE),
            session_listens=10,
            session_time=float(times[-10:].sum()),
        )
        stored[keys.user_state(user)] = state.to_bytes()
    return stored


def fold_each_event(
    state: UserState,
    listens: Sequence[tuple[int, ListenEvent | ListenRecord, Position]],
    config: StateConfig,
) -> FoldedListens:
    """``fold_listens`` as the per-event path computes it (``fold_each``: one
    ``apply_listen`` per event, the stream's fallback)."""
    return fold_each(state, listens, config)[0]


def batches_of(values: list[bytes], batch_size: int, partitions: int) -> list[list[Record]]:
    """The records as a worker's consume calls return them: a user's events on its
    partition, offsets counting per partition."""
    offsets = [0] * partitions
    records = []
    for value in values:
        user = decode_listen_record(value).user
        partition = user % partitions
        records.append(Record(TOPIC, partition, offsets[partition], b"%d" % user, value))
        offsets[partition] += 1
    return [records[i : i + batch_size] for i in range(0, len(records), batch_size)]


class _CollectorClock:
    """Process CPU seconds spent in the garbage collector's passes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


def decode_only(batches: list[list[Record]]) -> float:
    started = time.process_time()
    for batch in batches:
        for record in batch:
            decode_listen_record(record.value)
    return time.process_time() - started


def worker(
    batches: list[list[Record]], stored: dict[str, bytes], examples: bool, per_event: bool
) -> float:
    store = RedisUserStateStore(None, _PackingRedis(stored))  # type: ignore[arg-type]
    processor = ListenProcessor(
        store=store,
        dead_letters=_NoDeadLetters(),
        config=StateConfig(),
        examples=_ListSink() if examples else None,
        observer=StreamMetrics(CollectorRegistry(), PLAN),
        known_tracks=frozenset(range(TRACKS)),  # the worker checks the catalog's ids
        source=SOURCE,
    )
    # The processor looks the fold up in its module at each call.
    agents.fold_listens = fold_each_event if per_event else fold_listens  # type: ignore[assignment]

    async def run() -> float:
        started = time.process_time()
        for batch in batches:
            await processor.submit(batch)
        await processor.finish()
        return time.process_time() - started

    try:
        return asyncio.run(run())
    finally:
        agents.fold_listens = fold_listens


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-sizes", default="2000,400")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    # The process's settings, as the worker reads them (BOTIFY_STREAM__GC_THRESHOLD).
    parser.add_argument("--gc-threshold", type=int, default=Settings().stream.gc_threshold)
    parser.add_argument("--stored-share", type=float, default=0.5)
    parser.add_argument("--experiment-share", type=float, default=0.5)
    args = parser.parse_args()
    values = session_events(args.events, args.users, args.seed)
    values = with_experiments(values, args.experiment_share, args.seed)
    stored = stored_states(args.users, args.stored_share, args.partitions, args.seed)
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    batches = {size: batches_of(values, size, args.partitions) for size in sizes}
    del values
    tune_collector(args.gc_threshold)
    clock = _CollectorClock()
    paths = {"decode only": lambda size: decode_only(batches[size])} | {
        f"{name}, {label}": lambda size, on=on, each=each: worker(
            batches[size], stored, examples=on, per_event=each
        )
        for label, on in (("examples", True), ("no examples", False))
        for name, each in (("worker", False), ("per-event", True))
    }
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(args.repeat):  # interleaved: a load spike hits every figure alike
        for size in sizes:
            for name, path in paths.items():
                gc.collect()
                clock.seconds = 0.0
                seconds = path(size)
                runs.setdefault((name, size), []).append((seconds, clock.seconds))
    table = Table(
        title=f"stream worker CPU per event, {args.events:,} events of {args.users:,} users, "
        f"gc threshold {args.gc_threshold:,}, {args.stored_share:.0%} stored, "
        f"{args.experiment_share:.0%} in an experiment (best of {args.repeat})"
    )
    columns = ("path", "batch", "µs/event", "of it gc", "× decode only", "× per-event", "ev/s/core")
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for (name, size), measured in runs.items():
        seconds, collecting = min(measured)
        base = min(runs[("decode only", size)])[0]
        per_event = name.replace("worker", "per-event")
        each = min(runs[(per_event, size)])[0] if name.startswith("worker") else None
        table.add_row(
            name,
            f"{size:,}",
            f"{seconds / args.events * 1e6:.1f}",
            f"{collecting / args.events * 1e6:.1f}",
            f"{seconds / base:.2f}",
            "" if each is None else f"{seconds / each:.2f}",
            f"{args.events / seconds:,.0f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
