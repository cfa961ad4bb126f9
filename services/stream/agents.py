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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from botify import keys
from botify.errors import BackendUnavailableError, InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.state import Position, StateConfig, TrackPlay, UserCommit, apply_listen
from botify.storage import UserStateStore
from botify.training import encode_example

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLIED, DUPLICATE, DEAD_LETTER = "applied", "duplicate", "dead_letter"
# A user's state changes under a fold only while two workers think they own its partition,
# which lasts one rebalance: a few rounds settle it.
MAX_CONFLICT_ROUNDS = 20


class DeadLetters(Protocol):
    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Any:
        """Publish one record; return once the broker has it."""


class ExampleSink(Protocol):
    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> Any:
        """Publish (key, value) records of training examples; return once the broker has
        every one of them."""


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class _UserFold:
    """What folding one user's events of a batch gave: indices into the batch."""

    user: int
    applied: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    commit: UserCommit | None = None


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

    async def handle(self, record: Record) -> str:
        """Process one record; returns what happened: applied, duplicate or dead_letter."""
        return (await self.handle_batch([record]))[0]

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Process records in order with a few round trips for the whole batch: load the
        users' states, fold each user's events in memory, publish the examples, commit every
        user at once (compare-and-set on the position each fold started from). Returns only
        when every record is applied, a duplicate or dead-lettered."""
        outcomes = [DEAD_LETTER] * len(records)
        dead: list[tuple[Record, str]] = []
        pending: dict[int, list[tuple[int, ListenEvent, Position]]] = {}
        for i, record in enumerate(records):
            try:
                event = decode(record)
            except InvalidEventError as exc:
                dead.append((record, str(exc)))
                continue
            pending.setdefault(event.user, []).append(
                (i, event, Position(record.partition, record.offset))
            )
        span = _span(records)
        for attempt in range(MAX_CONFLICT_ROUNDS):
            if not pending:
                break
            if attempt:
                # Another writer moved these users on since their states were loaded (a
                # worker that lost its partitions and does not know yet): fold them again
                # from what it wrote.
                logger.warning(
                    "%d users of %s changed under the fold, refolding", len(pending), span
                )
            pending = await self._fold_and_commit(span, records, pending, outcomes, dead)
        else:
            raise BackendUnavailableError(f"users of {span} kept changing under the fold")
        for record, reason in dead:
            await self._retrying(
                f"dead-lettering of {_span([record])}", partial(self._dead_letter, record, reason)
            )
        return outcomes

    async def _fold_and_commit(
        self,
        span: str,
        records: list[Record],
        pending: dict[int, list[tuple[int, ListenEvent, Position]]],
        outcomes: list[str],
        dead: list[tuple[Record, str]],
    ) -> dict[int, list[tuple[int, ListenEvent, Position]]]:
        """One round: fold, publish the examples, commit. Sets the outcomes of the users
        written (and of those with nothing to write); returns the users to fold again."""
        folds, examples, skipped = await self._retrying(
            f"fold of {span}", lambda: self._fold(pending)
        )
        if examples and self.examples is not None:
            sink = self.examples
            await self._retrying(f"examples of {span}", lambda: sink.publish(examples))
        commits = [f.commit for f in folds if f.commit is not None]
        written = iter(
            await self._retrying(f"commit of {span}", lambda: self.store.commit_users(commits))
        )
        again: dict[int, list[tuple[int, ListenEvent, Position]]] = {}
        applied = duplicates = 0
        for fold in folds:
            if fold.commit is not None and not next(written):
                again[fold.user] = pending[fold.user]
                continue
            for i in fold.applied:
                outcomes[i] = APPLIED
            for i in fold.duplicates:
                outcomes[i] = DUPLICATE
            for i, reason in fold.failed:
                dead.append((records[i], reason))
            applied += len(fold.applied)
            duplicates += len(fold.duplicates)
        counts = {
            keys.STREAM_APPLIED: applied,
            keys.STREAM_DUPLICATES: duplicates,
            keys.STREAM_EXAMPLES_SKIPPED: skipped,
        }
        await self._retrying(f"counting of {span}", lambda: self._count(counts))
        return again

    async def _fold(
        self, pending: dict[int, list[tuple[int, ListenEvent, Position]]]
    ) -> tuple[list[_UserFold], list[tuple[bytes, bytes]], int]:
        """Load the users' states and fold each one's events in; returns the folds, the
        encoded training examples they made, and how many examples failed validation (their
        listens still apply). An event the fold itself refuses (a bug, not bad data) is
        dead-lettered, not retried."""
        states = await self.store.load_many(sorted(pending))
        folds: list[_UserFold] = []
        examples: list[tuple[bytes, bytes]] = []
        skipped = 0
        for user, events in pending.items():
            fold = _UserFold(user)
            start = state = states[user]
            plays: list[TrackPlay] = []
            for i, event, position in events:
                try:
                    t = apply_listen(state, event, position, self.config)
                except Exception as exc:  # deterministic: retrying would stall the partition
                    logger.exception("folding [%d]@%d failed", position.partition, position.offset)
                    fold.failed.append((i, f"processing failed: {exc!r}"))
                    continue
                if not t.applied:
                    fold.duplicates.append(i)
                    continue
                fold.applied.append(i)
                state = t.state
                plays += t.plays
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
            if fold.applied:
                fold.commit = UserCommit(state, start.position, tuple(plays))
            folds.append(fold)
        return folds, examples, skipped

    async def _count(self, counts: dict[str, int]) -> None:
        await self.store.incr_many({k: v for k, v in counts.items() if v})

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

    async def _retrying(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent I/O step until it succeeds. Skipping would lose events (their
        offsets get committed); stopping the worker cancels the wait instead."""
        delay, attempt = self.retry.first, 0
        while True:
            try:
                return await step()
            except Exception as exc:  # any backend failure: wait and redo
                attempt += 1
                if attempt == 1 or attempt % 10 == 0:
                    logger.error("%s failed (attempt %d), retrying: %r", what, attempt, exc)
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
