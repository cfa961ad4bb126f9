"""CPU per event of the stream worker's own Python, without a broker or Redis: what a shared
machine can still measure steadily, where the sustained rate (``bench_stream.py
--throughput``) needs a quiet one.

A backlog of listen events (``stream_throughput.session_events``: sessions of a pool of
users, seeded) is cut into the worker's batches and run through ``ListenProcessor.submit``
as the worker does (decode, fold, examples, commit commands, metrics), with:

- Redis replaced by the real store's command building and RESP packing
  (``RedisUserStateStore.commit_users`` over a connection that packs each command with
  hiredis and answers "written");
- the examples topic by a list (librdkafka's produce is not the worker's Python);
- the metrics by the worker's own ``StreamMetrics``.

Baseline in the same run: decoding the same records alone (what the bare consumer of
``--throughput`` does per record, with the worker's decoder). Prints process CPU µs per event
of both, and their ratio, best of ``--repeat`` runs (a busy machine only ever adds time).

    python bench/bench_stream_cpu.py [--events 100000] [--users 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

import hiredis
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.table import Table
from stream_throughput import session_events

from botify.events import decode_listen_record
from botify.experiments import ExperimentPlan
from botify.state import StateConfig
from botify.storage.redis import RedisUserStateStore
from services.stream.agents import ListenProcessor, Record
from services.stream.metrics import StreamMetrics

console = Console(width=100)
TOPIC = "botify.listens.v1"


class _PackingRedis:
    """The pipelined client's place: packs every command as it would, answers "written"."""

    async def call_many(self, *commands: tuple[Any, ...]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            hiredis.pack_command(command)
            if command[0] == "EVAL":
                replies.append([1] * (int(command[2]) - 2))
            elif command[0] == "EVALSHA":
                replies.append([1] * (int(command[2]) - 2))
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


def decode_only(batches: list[list[Record]]) -> float:
    started = time.process_time()
    for batch in batches:
        for record in batch:
            decode_listen_record(record.value)
    return time.process_time() - started


def worker(batches: list[list[Record]], examples: bool) -> float:
    store = RedisUserStateStore(None, _PackingRedis())  # type: ignore[arg-type]
    processor = ListenProcessor(
        store=store,
        dead_letters=_NoDeadLetters(),
        config=StateConfig(),
        examples=_ListSink() if examples else None,
        observer=StreamMetrics(CollectorRegistry(), ExperimentPlan(())),
        source="bench",
    )

    async def run() -> float:
        started = time.process_time()
        for batch in batches:
            await processor.submit(batch)
        await processor.finish()
        return time.process_time() - started

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    values = session_events(args.events, args.users, args.seed)
    batches = batches_of(values, args.batch_size, args.partitions)
    runs: dict[str, list[float]] = {"decode only": [], "worker": [], "worker, no examples": []}
    for _ in range(args.repeat):  # interleaved: a load spike hits every figure alike
        runs["decode only"].append(decode_only(batches))
        runs["worker"].append(worker(batches, examples=True))
        runs["worker, no examples"].append(worker(batches, examples=False))
    base = min(runs["decode only"])
    table = Table(
        title=f"stream worker CPU, {args.events:,} events of {args.users:,} users "
        f"(best of {args.repeat})"
    )
    for column in ("path", "µs/event", "× decode only", "events/s of one core"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for name, seconds in runs.items():
        best = min(seconds)
        table.add_row(
            name,
            f"{best / args.events * 1e6:.1f}",
            f"{best / base:.2f}",
            f"{args.events / best:,.0f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
