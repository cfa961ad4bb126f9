"""The listen-events processor: a thin shell around ``botify.state.apply_listen``.

For each batch of records: decode and validate; take the users' states (the worker's cache
of what it committed last, else Redis); fold each user's events in memory; publish the
training examples the fold made and wait for the broker to have them; commit every user's
state, position and popularity with a compare-and-set on the position its fold started from
(a Lua call per chunk of users). A record that cannot be processed goes to the dead-letter
topic with the reason, and is counted; nothing is dropped silently and nothing crashes the
worker.

Examples are delivered before the state is committed: a crash in between replays the batch
and publishes its examples again (readers drop duplicates by source partition and offset),
where the other order would lose them, since a replayed event makes no example.

Failures of Redis or the broker are retried, not skipped: the caller stores a batch's offsets
only once ``handle_batch`` returns, and every step is safe to redo. The counters are metrics,
not ledgers: a batch redone after its commit (or replayed after a crash) counts as
duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import msgspec

from botify import keys
from botify.errors import BackendUnavailableError, InvalidEventError
from botify.events import ListenEvent, ListenRecord, decode_listen_record
from botify.state import (
    Position,
    StateConfig,
    TrackPlay,
    Transition,
    UserCommit,
    UserState,
    apply_listen,
)
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
    def send(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        """Hand (key, value) records of training examples to the producer, without waiting."""

    async def flush(self) -> None:
        """Return once the broker has every record sent so far; on failure, drop the ones
        not delivered and raise."""


class StreamObserver(Protocol):
    """What the processor reports as it goes (``services.stream.metrics`` implements it)."""

    def retried(self, step: str) -> None:
        """A backend step failed and will be redone."""

    def committed(self, applied: Sequence[tuple[ListenEvent, Transition]], duplicates: int) -> None:
        """The listens whose users' states were written, right after the commit."""

    def examples_skipped(self, count: int) -> None: ...

    def dead_lettered(self) -> None: ...

    def batch(self, size: int, seconds: float) -> None:
        """A batch is done: every record applied, a duplicate or dead-lettered."""


class Record(msgspec.Struct, frozen=True, gc=False):
    """One consumed record (a Struct: one is made per event, see ``botify.state``)."""

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
    # The applied events and their transitions, for the observer (sessions they ended).
    transitions: list[tuple[ListenEvent, Transition]] = field(default_factory=list)
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
    # Users folded, delivered and committed together (see _fold_and_commit).
    chunk_users: int = 250
    # States this worker committed last, by user, least recently used first: a batch loads
    # from Redis only the users missing here. The commit's compare-and-set makes a stale
    # entry harmless: its commit is refused and the user is folded again from Redis.
    cache_users: int = 50_000
    observer: StreamObserver | None = None
    _cache: OrderedDict[int, UserState] = field(default_factory=OrderedDict, init=False)

    def forget(self) -> None:
        """Drop the cached states (the worker's partitions change)."""
        self._cache.clear()

    async def handle(self, record: Record) -> str:
        """Process one record; returns what happened: applied, duplicate or dead_letter."""
        return (await self.handle_batch([record]))[0]

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Process records in order with a few round trips for the whole batch: load the
        users' states, fold each user's events in memory, publish the examples, commit every
        user at once (compare-and-set on the position each fold started from). Returns only
        when every record is applied, a duplicate or dead-lettered."""
        started = time.perf_counter()
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
                "dead_letter", _span([record]), partial(self._dead_letter, record, reason)
            )
            if self.observer is not None:
                self.observer.dead_lettered()
        if self.observer is not None:
            self.observer.batch(len(records), time.perf_counter() - started)
        return outcomes

    async def _fold_and_commit(
        self,
        span: str,
        records: list[Record],
        pending: dict[int, list[tuple[int, ListenEvent, Position]]],
        outcomes: list[str],
        dead: list[tuple[Record, str]],
    ) -> dict[int, list[tuple[int, ListenEvent, Position]]]:
        """One round. The users go in chunks so that the broker and Redis work while the next
        chunk folds: a chunk's examples go to the producer as soon as it is folded; once they
        are delivered, its commit is sent, and its reply is read at the end. So each user's
        examples are on the broker before its state is committed. Sets the outcomes of the
        users written (and of those with nothing to write); returns the users to fold again."""
        users = sorted(pending)
        states = {u: self._cache[u] for u in users if u in self._cache}
        missing = [u for u in users if u not in states]
        if missing:
            states |= await self._retrying("load", span, lambda: self.store.load_many(missing))
        folds: list[_UserFold] = []
        commits: list[asyncio.Future[list[bool]]] = []
        skipped = 0
        previous: tuple[list[_UserFold], list[tuple[bytes, bytes]]] | None = None
        try:
            for first in range(0, len(users), self.chunk_users):
                chunk = users[first : first + self.chunk_users]
                chunk_folds, examples, n = self._fold(chunk, pending, states)
                skipped += n
                if previous is not None:
                    commits.append(await self._commit_when_delivered(span, *previous))
                if examples and self.examples is not None:
                    self.examples.send(examples)
                previous = (chunk_folds, examples)
                folds += chunk_folds
            if previous is not None:
                commits.append(await self._commit_when_delivered(span, *previous))
            written = iter([w for commit in commits for w in await commit])
        finally:
            for commit in commits:  # cancelled (the worker stops): the batch is redone
                commit.cancel()
        again: dict[int, list[tuple[int, ListenEvent, Position]]] = {}
        applied = duplicates = 0
        written_events: list[tuple[ListenEvent, Transition]] = []
        for fold in folds:
            if fold.commit is not None and not next(written):
                again[fold.user] = pending[fold.user]
                self._cache.pop(fold.user, None)
                continue
            self._remember(
                fold.user, states[fold.user] if fold.commit is None else fold.commit.state
            )
            for i in fold.applied:
                outcomes[i] = APPLIED
            for i in fold.duplicates:
                outcomes[i] = DUPLICATE
            for i, reason in fold.failed:
                dead.append((records[i], reason))
            applied += len(fold.applied)
            duplicates += len(fold.duplicates)
            written_events += fold.transitions
        counts = {
            keys.STREAM_APPLIED: applied,
            keys.STREAM_DUPLICATES: duplicates,
            keys.STREAM_EXAMPLES_SKIPPED: skipped,
        }
        if self.observer is not None:
            self.observer.committed(written_events, duplicates)
            if skipped:
                self.observer.examples_skipped(skipped)
        await self._retrying("count", span, lambda: self._count(counts))
        return again

    def _remember(self, user: int, state: UserState) -> None:
        self._cache[user] = state
        self._cache.move_to_end(user)
        while len(self._cache) > self.cache_users:
            self._cache.popitem(last=False)

    async def _commit_when_delivered(
        self, span: str, folds: list[_UserFold], examples: list[tuple[bytes, bytes]]
    ) -> asyncio.Future[list[bool]]:
        """Wait until ``examples`` (already handed to the sink) are delivered, then send the
        folds' commit; returns its pending reply."""
        if examples and self.examples is not None:
            sink, sent = self.examples, True

            async def deliver() -> None:
                nonlocal sent
                if not sent:  # a failed flush dropped what it had: send them again
                    sink.send(examples)
                sent = False
                await sink.flush()

            await self._retrying("examples", span, deliver)
        commits = [f.commit for f in folds if f.commit is not None]
        reply = asyncio.ensure_future(
            self._retrying("commit", span, lambda: self.store.commit_users(commits))
        )
        # Two turns of the loop: the task issues its commands, then they are written out, so
        # Redis applies them while the next chunk folds.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return reply

    def _fold(
        self,
        users: list[int],
        pending: dict[int, list[tuple[int, ListenEvent, Position]]],
        states: dict[int, UserState],
    ) -> tuple[list[_UserFold], list[tuple[bytes, bytes]], int]:
        """Fold each user's events into its state; returns the folds, the encoded training
        examples they made, and how many examples failed validation (their listens still
        apply). An event the fold itself refuses (a bug, not bad data) is dead-lettered, not
        retried."""
        folds: list[_UserFold] = []
        examples: list[tuple[bytes, bytes]] = []
        skipped = 0
        config, encode = self.config, encode_example
        for user in users:
            fold = _UserFold(user)
            start = state = states[user]
            plays: list[TrackPlay] = []
            key = b"%d" % user  # every example's record key (TrainingExample.record_key)
            for i, event, position in pending[user]:
                try:
                    t = apply_listen(state, event, position, config)
                except Exception as exc:  # deterministic: retrying would stall the partition
                    logger.exception("folding [%d]@%d failed", position.partition, position.offset)
                    fold.failed.append((i, f"processing failed: {exc!r}"))
                    continue
                if not t.applied:
                    fold.duplicates.append(i)
                    continue
                fold.applied.append(i)
                fold.transitions.append((event, t))
                state = t.state
                plays += t.plays
                if t.example is not None:
                    try:
                        examples.append((key, encode(t.example)))
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


def decode(record: Record) -> ListenEvent | ListenRecord:
    """The record's event, or ``InvalidEventError`` saying why it is not one."""
    event = decode_listen_record(record.value)
    if record.key is not None and record.key != event.key:
        raise InvalidEventError(f"record key {record.key!r} is not the user id {event.user}")
    return event


def _span(records: list[Record]) -> str:
    """Topic, partitions and offsets of a batch, for log lines."""
    offsets = [r.offset for r in records]
    parts = ",".join(str(p) for p in sorted({r.partition for r in records}))
    return f"{records[0].topic}[{parts}]@{min(offsets)}..{max(offsets)}"
