"""The listen-events agent: a thin shell around ``botify.state.apply_listen``.

For each batch of records: decode and validate; load the users' states; fold the events in;
publish the training examples the fold made and wait for the broker to have them; commit
state, position and popularity atomically (a Lua script that skips positions already
applied). A record that cannot be processed goes to the dead-letter topic with the reason,
and is counted; nothing is dropped silently and nothing crashes the worker.

Examples are delivered before the state is committed: a crash in between replays the batch
and publishes its examples again (readers drop duplicates by source partition and offset),
where the other order would lose them, since a replayed event makes no example.

Failures of Redis or the broker are retried, not skipped: the caller acks a batch only once
``handle_batch`` returns, and every step is safe to redo. The counters are metrics, not
ledgers: a batch redone after its commit (or replayed after a crash) counts as duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

from botify import keys
from botify.errors import InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.state import Position, StateConfig, Transition, apply_listen
from botify.storage import UserStateStore
from botify.training import encode_example

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLIED, DUPLICATE, DEAD_LETTER = "applied", "duplicate", "dead_letter"


class DeadLetters(Protocol):
    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Any:
        """Publish one record; return once the broker has it."""


class ExampleSink(Protocol):
    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> Any:
        """Publish (key, value) records of training examples; return once the broker has
        every one of them."""


class StreamObserver(Protocol):
    """What the processor reports as it goes (``services.stream.metrics`` implements it)."""

    def retried(self, step: str) -> None:
        """A backend step failed and will be redone."""

    def committed(self, applied: Sequence[tuple[ListenEvent, Transition]], duplicates: int) -> None:
        """The listens whose transitions were written, right after the commit."""

    def examples_skipped(self, count: int) -> None: ...

    def dead_lettered(self) -> None: ...

    def batch(self, size: int, seconds: float) -> None:
        """A batch is done: every record applied, a duplicate or dead-lettered."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Retry:
    """Backoff for backend failures: first delay, growth, cap (seconds)."""

    first: float = 0.05
    factor: float = 2.0
    cap: float = 2.0


@dataclass
class ListenProcessor:
    store: UserStateStore
    dead_letters: DeadLetters
    config: StateConfig
    retry: Retry = Retry()
    # None: the worker folds state only and makes no training data.
    examples: ExampleSink | None = None
    observer: StreamObserver | None = None

    async def handle(self, record: Record) -> str:
        """Process one record; returns what happened: applied, duplicate or dead_letter."""
        return (await self.handle_batch([record]))[0]

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Process records in order with a few Redis round trips for the whole batch: load
        the users' states, fold every event in memory, commit the transitions (pipelined).
        Returns only when every record is applied, a duplicate or dead-lettered."""
        started = time.perf_counter()
        outcomes = [DEAD_LETTER] * len(records)
        dead: list[tuple[Record, str]] = []
        good: list[tuple[int, ListenEvent, Position]] = []
        for i, record in enumerate(records):
            try:
                event = decode(record)
            except InvalidEventError as exc:
                dead.append((record, str(exc)))
                continue
            good.append((i, event, Position(record.partition, record.offset)))
        if good:
            span = _span(records)
            transitions, examples, failed, skipped = await self._retrying(
                "fold", span, lambda: self._fold(good)
            )
            if examples and self.examples is not None:
                sink = self.examples
                await self._retrying("examples", span, lambda: sink.publish(examples))
            written = await self._retrying(
                "commit", span, lambda: self._commit(transitions, len(failed), skipped)
            )
            for (i, _, _), ok in zip(good, written, strict=True):
                outcomes[i] = APPLIED if ok else DUPLICATE
            if self.observer is not None:
                applied = [
                    (event, t)
                    for (_, event, _), t, ok in zip(good, transitions, written, strict=True)
                    if ok
                ]
                self.observer.committed(applied, len(written) - len(applied) - len(failed))
                if skipped:
                    self.observer.examples_skipped(skipped)
            for i, reason in failed:
                outcomes[i] = DEAD_LETTER
                dead.append((records[i], reason))
        for record, reason in dead:
            await self._retrying(
                "dead_letter", _span([record]), partial(self._dead_letter, record, reason)
            )
            if self.observer is not None:
                self.observer.dead_lettered()
        if self.observer is not None:
            self.observer.batch(len(records), time.perf_counter() - started)
        return outcomes

    async def _fold(
        self, good: list[tuple[int, ListenEvent, Position]]
    ) -> tuple[list[Transition], list[tuple[bytes, bytes]], list[tuple[int, str]], int]:
        """Load the users' states and fold the events in; returns the transitions, the
        encoded training examples they made, the records the fold itself refused (a bug,
        not bad data: those are dead-lettered, not retried), and how many examples failed
        validation (their listens still apply)."""
        states = await self.store.load_many(sorted({e.user for _, e, _ in good}))
        transitions: list[Transition] = []
        examples: list[tuple[bytes, bytes]] = []
        failed: list[tuple[int, str]] = []
        skipped = 0
        for i, event, position in good:
            try:
                t = apply_listen(states[event.user], event, position, self.config)
            except Exception as exc:  # deterministic: retrying would stall the partition
                logger.exception("folding [%d]@%d failed", position.partition, position.offset)
                failed.append((i, f"processing failed: {exc!r}"))
                t = Transition(states[event.user], applied=False)
            if t.example is not None:
                try:
                    examples.append((t.example.record_key, encode_example(t.example)))
                except Exception as exc:  # deterministic: a retry would stall the partition
                    # The listen is good and its state applies; only the example is set
                    # aside (counted and logged; the listen stays on its topic to redo it).
                    logger.warning(
                        "no training example from [%d]@%d: %s",
                        position.partition,
                        position.offset,
                        exc,
                    )
                    skipped += 1
            states[event.user] = t.state
            transitions.append(t)
        return transitions, examples, failed, skipped

    async def _commit(
        self, transitions: list[Transition], failed: int, examples_skipped: int = 0
    ) -> list[bool]:
        """Commit the transitions and count them; returns which ones were written."""
        written = await self.store.commit_many(transitions)
        applied = sum(written)
        duplicates = len(transitions) - applied - failed
        if applied:
            await self.store.incr(keys.STREAM_APPLIED, applied)
        if duplicates:
            await self.store.incr(keys.STREAM_DUPLICATES, duplicates)
        if examples_skipped:
            await self.store.incr(keys.STREAM_EXAMPLES_SKIPPED, examples_skipped)
        return written

    async def _dead_letter(self, record: Record, reason: str) -> None:
        logger.warning(
            "dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
        )
        headers = [
            ("botify-error", reason.encode()[:1000]),
            ("botify-source-topic", record.topic.encode()),
            ("botify-source-partition", str(record.partition).encode()),
            ("botify-source-offset", str(record.offset).encode()),
        ]
        await self.dead_letters.send(key=record.key, value=record.value, headers=headers)
        await self.store.incr(keys.STREAM_DEAD_LETTERS)

    async def _retrying(self, name: str, span: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent I/O step until it succeeds. Skipping would lose events (their
        offsets get committed); stopping the worker cancels the wait instead."""
        delay, attempt = self.retry.first, 0
        while True:
            try:
                return await step()
            except Exception as exc:  # any backend failure: wait and redo
                attempt += 1
                if self.observer is not None:
                    self.observer.retried(name)
                if attempt == 1 or attempt % 10 == 0:
                    logger.error(
                        "%s of %s failed (attempt %d), retrying: %r", name, span, attempt, exc
                    )
                await asyncio.sleep(delay)
                delay = min(delay * self.retry.factor, self.retry.cap)


def decode(record: Record) -> ListenEvent:
    """The record's event, or ``InvalidEventError`` saying why it is not one."""
    event = decode_listen_event(record.value)
    if record.key is not None and record.key != event.key:
        raise InvalidEventError(f"record key {record.key!r} is not the user id {event.user}")
    return event


def _span(records: list[Record]) -> str:
    """Topic, partitions and offsets of a batch, for log lines."""
    offsets = [r.offset for r in records]
    parts = ",".join(str(p) for p in sorted({r.partition for r in records}))
    return f"{records[0].topic}[{parts}]@{min(offsets)}..{max(offsets)}"
