"""The listen-events processor: a thin shell around ``botify.state.fold_listens`` (one
user's events of a batch at a time; ``fold_each``, one ``apply_listen`` per event, when it
raises).

For each batch of records: decode and validate; take the users' states (the worker's cache
of what it committed last, else Redis); fold each user's events in memory; publish the
training examples the fold made and wait for the broker to have them; commit every user's
state, position and popularity with a compare-and-set on the position its fold started from
(a Lua call per chunk of users). ``submit`` leaves a batch's commits in flight while the
caller takes the next batch, which folds the users in flight from the states those commits
write. A record that cannot be processed goes to the dead-letter
topic with the reason, and is counted; nothing is dropped silently and nothing crashes the
worker.

Examples are delivered before the state is committed: a crash in between replays the batch
and publishes its examples again (readers drop duplicates by source partition and offset),
where the other order would lose them, since a replayed event makes no example.

Failures of Redis or the broker are retried, not skipped: the caller stores a batch's offsets
only once ``handle_batch`` returns, or ``submit``/``finish`` report it finished, and every
step is safe to redo. The counters are metrics,
not ledgers: a batch redone after its commit (or replayed after a crash) counts as
duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import msgspec

from botify import keys
from botify.catalog import unknown_track
from botify.dead_letters import RECORD_ERRORS, DeadLetter, Headers
from botify.errors import BackendUnavailableError, InvalidEventError
from botify.events import DecodedListen, decode_listen_record
from botify.state import (
    FoldedListens,
    Position,
    SessionEnd,
    StateConfig,
    TrackPlay,
    UserCommit,
    UserState,
    fold_each,
    fold_listens,
)
from botify.storage import UserStateStore
from botify.training import TrainingExample, encode_example

logger = logging.getLogger(__name__)

T = TypeVar("T")

APPLIED, DUPLICATE, DEAD_LETTER = "applied", "duplicate", "dead_letter"
# A record whose dead letter could not be delivered in ``retry_attempts`` tries.
SKIPPED = "skipped"
# A user's state changes under a fold only while two workers think they own its partition,
# which lasts one rebalance: a few rounds settle it.
MAX_CONFLICT_ROUNDS = 20


DeadLetterRecord = tuple[bytes | None, bytes | None, Headers]


class DeadLetters(Protocol):
    async def send_many(self, records: Sequence[DeadLetterRecord]) -> list[str | None]:
        """Publish (key, value, headers) records together; return once the broker has them or
        refused them: per record, None when delivered, else the error's name. Raises when
        the broker cannot be reached at all."""


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

    def committed(
        self,
        applied: Sequence[DecodedListen],
        ended: Sequence[tuple[DecodedListen, SessionEnd]],
        duplicates: int,
    ) -> None:
        """The listens whose users' states were written, right after the commit, and the
        sessions the ``last`` ones among them closed."""

    def examples_skipped(self, count: int) -> None: ...

    def fold_fell_back(self) -> None:
        """``fold_listens`` raised on a user's events (a bug): they were folded one at a
        time."""

    def dead_lettered(self, count: int) -> None: ...

    def skipped(self, count: int) -> None:
        """Records neither applied nor dead-lettered: their dead letter stayed undeliverable."""

    def batch(self, size: int, seconds: float) -> None:
        """A batch is done: every record applied, a duplicate or dead-lettered."""


class Record(msgspec.Struct, frozen=True, gc=False):
    """One consumed record (a Struct: one is made per event, see ``botify.state``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class _UserFold(msgspec.Struct, gc=False):
    """What folding one user's events of a batch gave: indices into the batch. (A Struct:
    one is made per user and batch, and it holds no cycle.)"""

    user: int
    applied: list[int]
    # The applied events and the sessions they closed, for the observer.
    events: list[DecodedListen]
    ended: list[tuple[DecodedListen, SessionEnd]]
    duplicates: list[int]
    failed: list[tuple[int, str]]
    state: UserState  # after the last event applied
    plays: tuple[TrackPlay, ...]
    commit: UserCommit | None = None


@dataclass(slots=True)
class _Round:
    """One fold of some users of a batch, its commits sent: their replies are pending."""

    number: int
    folds: list[_UserFold]
    states: dict[int, UserState]
    commits: list[asyncio.Future[list[bool]]] = field(default_factory=list)
    skipped: int = 0  # examples that failed validation

    def cancel(self) -> None:
        for commit in self.commits:
            commit.cancel()


class _Span:
    """Topic, partitions and offsets of a batch, for log lines (worked out only for one)."""

    __slots__ = ("_records",)

    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def __str__(self) -> str:
        records = self._records
        offsets = [r.offset for r in records]
        parts = ",".join(str(p) for p in sorted({r.partition for r in records}))
        return f"{records[0].topic}[{parts}]@{min(offsets)}..{max(offsets)}"


@dataclass(slots=True)
class _Batch:
    """A batch being processed: its commits sent, its outcomes not all known yet."""

    records: list[Record]
    outcomes: list[str]
    dead: list[tuple[int, str]]
    pending: dict[int, list[tuple[int, DecodedListen, Position]]]
    span: _Span
    started: float
    round: _Round | None

    def cancel(self) -> None:
        if self.round is not None:
            self.round.cancel()


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
    # A dead letter keeps at most this much of its record's value (DeadLetter.copy).
    dead_letter_max_bytes: int = 65_536
    # Tries of a batch's dead letters before the undeliverable ones are skipped.
    retry_attempts: int = 8
    # The catalog's track ids: an event naming another track is dead-lettered, never folded
    # (it would count in popularity, and TopPop would serve a track /track cannot find).
    # None: not checked.
    known_tracks: Container[int] | None = None
    # A failing batch fold is logged at most once per this many seconds (a bug would fail
    # every batch); the observer counts every one.
    fold_fallback_log_s: float = 60.0
    # The identity of the topic lifetime the records' offsets count in (see
    # botify.state.Position); the worker sets it on each assignment.
    source: str | None = None
    _cache: OrderedDict[int, UserState] = field(default_factory=OrderedDict, init=False)
    # Users the batch in flight is committing: the state it folded them to and its round.
    _unconfirmed: dict[int, tuple[UserState, int]] = field(default_factory=dict, init=False)
    _in_flight: _Batch | None = field(default=None, init=False)
    # Set when the batch in flight must be finished before the next one folds.
    _settle_first: bool = field(default=False, init=False)
    _rounds: int = field(default=0, init=False)
    _fallback_logged_at: float = field(default=float("-inf"), init=False)
    _fallbacks_unlogged: int = field(default=0, init=False)

    def forget(self) -> None:
        """Drop the cached states (the worker's partitions change). A batch in flight is
        finished before the next one is folded."""
        self._cache.clear()
        self._settle_first = True

    async def handle(self, record: Record) -> str:
        """Process one record; returns what happened: applied, duplicate, dead_letter or
        skipped."""
        return (await self.handle_batch([record]))[0]

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Process records in order with a few round trips for the whole batch: load the
        users' states, fold each user's events in memory, publish the examples, commit every
        user at once (compare-and-set on the position each fold started from). Returns only
        when every record is applied, a duplicate, dead-lettered or (its dead letter
        undeliverable) skipped. A batch ``submit`` left in flight is finished first."""
        await self.finish()
        return await self._end(await self._begin(records))

    async def submit(self, records: list[Record]) -> list[list[str]]:
        """Process records as ``handle_batch`` does, but return once their commits are sent,
        before Redis has answered: the batch stays in flight while the caller takes the next
        one, so Redis applies it while the next batch is decoded, folded and its examples
        delivered. Returns the outcomes of the batches this call finished, oldest first (the
        one in flight before, if any): only those are done, and only their offsets may be
        stored. ``finish`` ends the one left in flight."""
        done = []
        if self._in_flight is not None and self._settle_first:
            # A user changed under a fold, or the partitions changed: the batch in flight is
            # settled before another fold reads any state.
            done.append(await self.finish_one())
        self._settle_first = False
        batch = await self._begin(records)
        if self._in_flight is not None:
            try:
                done.append(await self.finish_one())
            except BaseException:  # cancelled (the worker stops): neither batch is stored
                batch.cancel()
                raise
        self._in_flight = batch
        return done

    async def finish(self) -> list[list[str]]:
        """End the batch ``submit`` left in flight; returns its outcomes (none if none)."""
        return [await self.finish_one()] if self._in_flight is not None else []

    async def finish_one(self) -> list[str]:
        batch, self._in_flight = self._in_flight, None
        assert batch is not None
        try:
            return await self._end(batch)
        except BaseException:
            batch.cancel()
            raise

    def abandon(self) -> None:
        """Drop the batch in flight (the worker stops; its offsets are not stored, so it is
        replayed)."""
        if self._in_flight is not None:
            self._in_flight.cancel()
            self._in_flight = None
        self._unconfirmed.clear()

    async def _begin(self, records: list[Record]) -> _Batch:
        """Decode and validate, fold, deliver the examples and send the commits."""
        started = time.perf_counter()
        outcomes = [DEAD_LETTER] * len(records)
        dead: list[tuple[int, str]] = []  # (index in the batch, reason)
        pending: dict[int, list[tuple[int, DecodedListen, Position]]] = {}
        known, source = self.known_tracks, self.source
        for i, record in enumerate(records):
            # decode(record), inline: this runs per event.
            try:
                event = decode_listen_record(record.value)
                if record.key is not None and record.key != event.key:
                    raise InvalidEventError(
                        f"record key {record.key!r} is not the user id {event.user}"
                    )
            except InvalidEventError as exc:
                dead.append((i, str(exc)))
                continue
            # A cheap inline pre-check (this runs per event); on a miss unknown_track, the
            # catalog's one rule, decides and gives the reason.
            if known is not None and (
                event.track not in known
                or (event.recommendation is not None and event.recommendation not in known)
            ):
                unknown = unknown_track(event.track, event.recommendation, known)
                if unknown is not None:
                    dead.append((i, unknown))
                    continue
            entry = (i, event, Position(record.partition, record.offset, source))
            user_entries = pending.get(event.user)
            if user_entries is None:
                pending[event.user] = [entry]
            else:
                user_entries.append(entry)
        span = _Span(records)
        first = await self._send_round(span, pending, refold=False) if pending else None
        return _Batch(records, outcomes, dead, pending, span, started, first)

    async def _end(self, batch: _Batch) -> list[str]:
        """Read the commits' replies; fold again the users another writer moved on; send the
        dead letters."""
        span, outcomes, dead = batch.span, batch.outcomes, batch.dead
        pending, current, rounds = batch.pending, batch.round, 1
        while current is not None:
            batch.round = current
            pending = await self._settle_round(span, current, pending, outcomes, dead)
            if not pending:
                break
            # Another writer moved these users on since their states were loaded (a worker
            # that lost its partitions and does not know yet): fold them again from what it
            # wrote, and settle what is in flight before the next batch folds.
            self._settle_first = True
            if rounds == MAX_CONFLICT_ROUNDS:
                raise BackendUnavailableError(f"users of {span} kept changing under the fold")
            rounds += 1
            logger.warning("%d users of %s changed under the fold, refolding", len(pending), span)
            current = await self._send_round(span, pending, refold=True)
        batch.round = None
        if dead:
            await self._dead_letter(span, batch.records, dead, outcomes)
        if self.observer is not None:
            self.observer.batch(len(batch.records), time.perf_counter() - batch.started)
        return outcomes

    async def _send_round(
        self,
        span: _Span,
        pending: dict[int, list[tuple[int, DecodedListen, Position]]],
        refold: bool,
    ) -> _Round:
        """Fold the users of ``pending`` and send their commits, without waiting for the
        replies. The users go in chunks so that the broker and Redis work while the next
        chunk folds: a chunk's examples go to the producer as soon as it is folded; once they
        are delivered, its commit is sent. So each user's examples are on the broker before
        its state is committed.

        A user's state is the one the batch in flight folded it to, else the cache's, else
        Redis's (read after every commit sent before, on the same connection). A refold reads
        Redis only."""
        users = sorted(pending)
        states: dict[int, UserState] = {}
        missing = users
        if not refold:
            missing = []
            unconfirmed, cache = self._unconfirmed, self._cache
            for u in users:
                entry = unconfirmed.get(u)
                if entry is not None:
                    states[u] = entry[0]
                elif (state := cache.get(u)) is not None:
                    states[u] = state
                else:
                    missing.append(u)
        if missing:
            states |= await self._retrying("load", span, lambda: self.store.load_many(missing))
        self._rounds += 1
        current = _Round(self._rounds, [], states)
        folds, commits = current.folds, current.commits
        previous: tuple[list[_UserFold], list[tuple[bytes, bytes]], bool] | None = None
        try:
            for first in range(0, len(users), self.chunk_users):
                chunk = users[first : first + self.chunk_users]
                chunk_folds, examples, n = self._fold(chunk, pending, states)
                current.skipped += n
                if previous is not None:
                    commits.append(await self._commit_when_delivered(span, *previous))
                sent = True
                if examples and self.examples is not None:
                    try:
                        self.examples.send(examples)
                    except Exception as exc:  # a fenced producer: delivery sends them again
                        logger.warning("examples of %s not sent, retrying: %r", span, exc)
                        sent = False
                previous = (chunk_folds, examples, sent)
                folds += chunk_folds
            if previous is not None:
                commits.append(await self._commit_when_delivered(span, *previous))
        except BaseException:
            current.cancel()  # cancelled (the worker stops): the batch is redone
            raise
        if not refold:
            # The next batch folds these users from here; a refold is settled before any
            # other fold reads state (see _end), so it is not registered.
            for fold in folds:
                if fold.commit is not None:
                    self._unconfirmed[fold.user] = (fold.commit.state, current.number)
        return current

    async def _settle_round(
        self,
        span: _Span,
        current: _Round,
        pending: dict[int, list[tuple[int, DecodedListen, Position]]],
        outcomes: list[str],
        dead: list[tuple[int, str]],
    ) -> dict[int, list[tuple[int, DecodedListen, Position]]]:
        """Read a round's commit replies; set the outcomes of the users written (and of those
        with nothing to write); returns the users to fold again."""
        try:
            written = iter([w for commit in current.commits for w in await commit])
        finally:
            current.cancel()
        again: dict[int, list[tuple[int, DecodedListen, Position]]] = {}
        applied = duplicates = 0
        written_events: list[DecodedListen] = []
        ended: list[tuple[DecodedListen, SessionEnd]] = []
        unconfirmed, number, cache, states = (
            self._unconfirmed,
            current.number,
            self._cache,
            current.states,
        )
        for fold in current.folds:
            user = fold.user
            if fold.commit is not None:
                entry = unconfirmed.get(user)
                if entry is not None and entry[1] == number:
                    del unconfirmed[user]
                if not next(written):
                    again[user] = pending[user]
                    cache.pop(user, None)
                    continue
            cache[user] = states[user] if fold.commit is None else fold.state
            cache.move_to_end(user)
            for i in fold.applied:
                outcomes[i] = APPLIED
            if fold.duplicates:
                for i in fold.duplicates:
                    outcomes[i] = DUPLICATE
                duplicates += len(fold.duplicates)
            if fold.failed:
                dead += fold.failed
            applied += len(fold.applied)
            written_events += fold.events
            if fold.ended:
                ended += fold.ended
        while len(cache) > self.cache_users:  # least recently used first
            cache.popitem(last=False)
        counts = {
            keys.STREAM_APPLIED: applied,
            keys.STREAM_DUPLICATES: duplicates,
            keys.STREAM_EXAMPLES_SKIPPED: current.skipped,
        }
        if self.observer is not None:
            self.observer.committed(written_events, ended, duplicates)
            if current.skipped:
                self.observer.examples_skipped(current.skipped)
        await self._retrying("count", span, lambda: self._count(counts))
        return again

    async def _commit_when_delivered(
        self, span: object, folds: list[_UserFold], examples: list[tuple[bytes, bytes]], sent: bool
    ) -> asyncio.Future[list[bool]]:
        """Wait until ``examples`` (handed to the sink already if ``sent``) are delivered, then
        send the folds' commit; returns its pending reply."""
        if examples and self.examples is not None:
            sink = self.examples

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
        pending: dict[int, list[tuple[int, DecodedListen, Position]]],
        states: dict[int, UserState],
    ) -> tuple[list[_UserFold], list[tuple[bytes, bytes]], int]:
        """Fold each user's events into its state; returns the folds, the encoded training
        examples they made, and how many examples failed validation (their listens still
        apply). An event the fold itself refuses (a bug, not bad data) is dead-lettered, not
        retried."""
        folds: list[_UserFold] = []
        examples: list[tuple[bytes, bytes]] = []
        skipped = 0
        config, encode, making = self.config, encode_example, self.examples is not None
        made: list[TrainingExample]
        for user in users:
            items = pending[user]
            start = states[user]
            failed: list[tuple[int, str]] = []
            try:
                folded = fold_listens(start, items, config, making)
            except Exception as exc:  # a bug, not bad data: find the event, one at a time
                self._fold_failed(user, exc)
                folded, failed = self._fold_each(items, start)
            made = folded.examples
            fold = _UserFold(
                user,
                folded.applied,
                folded.events,
                folded.ended,
                folded.duplicates,
                failed,
                folded.state,
                folded.plays,
            )
            if making and made:
                key = b"%d" % user  # the examples' record key: the user, as on the listens topic
                for example in made:
                    try:
                        examples.append((key, encode(example)))
                    except Exception as exc:  # deterministic: a retry would stall the partition
                        # The listen is good and its state applies; only the example is set
                        # aside (counted and logged; the listen stays on its topic to redo it).
                        logger.warning(
                            "no training example from [%d]@%d: %s",
                            example.partition,
                            example.offset,
                            exc,
                        )
                        skipped += 1
            if fold.applied:
                fold.commit = UserCommit(fold.state, start.position, fold.plays)
            folds.append(fold)
        return folds, examples, skipped

    def _fold_failed(self, user: int, exc: Exception) -> None:
        """Count a failed batch fold; log it, with its traceback, if none was logged for
        ``fold_fallback_log_s``."""
        if self.observer is not None:
            self.observer.fold_fell_back()
        self._fallbacks_unlogged += 1
        now = time.monotonic()
        if now - self._fallback_logged_at >= self.fold_fallback_log_s:
            logger.error(
                "fold_listens failed on user %d's events, folding them one at a time"
                " (%d such fallbacks since the last logged)",
                user,
                self._fallbacks_unlogged,
                exc_info=exc,
            )
            self._fallback_logged_at, self._fallbacks_unlogged = now, 0

    def _fold_each(
        self, items: list[tuple[int, DecodedListen, Position]], state: UserState
    ) -> tuple[FoldedListens, list[tuple[int, str]]]:
        """The fold of one user's events one at a time (``fold_each``), when
        ``fold_listens`` raised: the events ``apply_listen`` raises on are dead-lettered with
        the reason, the others apply."""
        folded, errors = fold_each(state, items, self.config)
        failed = []
        if errors:
            positions = {i: position for i, _, position in items}
            for i, exc in errors:  # deterministic: retrying would stall the partition
                position = positions[i]
                logger.error(
                    "folding [%d]@%d failed", position.partition, position.offset, exc_info=exc
                )
                failed.append((i, f"processing failed: {exc!r}"))
        return folded, failed

    async def _count(self, counts: dict[str, int]) -> None:
        await self.store.incr_many({k: v for k, v in counts.items() if v})

    async def _dead_letter(
        self, span: object, records: list[Record], dead: list[tuple[int, str]], outcomes: list[str]
    ) -> None:
        """Send the batch's dead letters together, at most ``retry_attempts`` times. A copy
        the broker refuses for what it is (too large, say) is sent again without its value;
        one still undelivered after the last try is skipped: logged with its source and
        counted, so that a record can never stall its partition."""
        letters = {i: DeadLetter(*_coordinates(records[i]), reason) for i, reason in dead}
        for letter in letters.values():
            logger.warning(
                "dead-lettering %s[%d]@%d: %s",
                letter.topic,
                letter.partition,
                letter.offset,
                letter.reason[:300],
            )
        # A copy the broker refuses for itself (too large, invalid) goes again without its
        # value, and is given up after retry_attempts such refusals: skipped and counted.
        # A failure of the broker as a whole is retried until it ends, as every other step
        # is: skipping would commit the offsets of records that never reached the DLQ.
        bare: set[int] = set()  # sent without their value
        refused: dict[int, int] = {}  # record-level refusals per letter
        given_up: list[int] = []
        pending = sorted(letters)
        delay, attempt = self.retry.first, 0
        while pending:
            attempt += 1
            copies = [
                letters[i].copy(0 if i in bare else self.dead_letter_max_bytes) for i in pending
            ]
            try:
                errors = await self.dead_letters.send_many(copies)
            except Exception as exc:  # the broker as a whole: every copy is retried
                errors = [repr(exc)] * len(pending)
            failed = [(i, e) for i, e in zip(pending, errors, strict=True) if e is not None]
            if not failed:
                break
            if self.observer is not None:
                self.observer.retried("dead_letter")
            pending = []
            for i, error in failed:
                if error in RECORD_ERRORS:
                    refused[i] = refused.get(i, 0) + 1
                    if i not in bare:
                        letters[i] = letters[i].undeliverable(error)
                        bare.add(i)
                    elif refused[i] >= self.retry_attempts:
                        given_up.append(i)
                        continue
                pending.append(i)
            if attempt == 1 or attempt % 10 == 0 or given_up:
                logger.error(
                    "%d dead letters of %s undelivered (attempt %d): %s",
                    len(failed),
                    span,
                    attempt,
                    failed[0][1],
                )
            if pending:
                await asyncio.sleep(delay)
                delay = min(delay * self.retry.factor, self.retry.cap)
        skipped = len(given_up)
        for i in given_up:
            outcomes[i] = SKIPPED
            r = records[i]
            logger.error(
                "skipping %s[%d]@%d: the broker refused its dead letter %d times (%s)",
                r.topic,
                r.partition,
                r.offset,
                refused[i],
                letters[i].reason[:300],
            )
        counts = {keys.STREAM_DEAD_LETTERS: len(dead) - skipped, keys.STREAM_SKIPPED: skipped}
        if self.observer is not None:
            if len(dead) > skipped:
                self.observer.dead_lettered(len(dead) - skipped)
            if skipped:
                self.observer.skipped(skipped)
        await self._retrying("count", span, lambda: self._count(counts))

    async def _retrying(self, name: str, span: object, step: Callable[[], Awaitable[T]]) -> T:
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


def _coordinates(record: Record) -> tuple[str, int, int, bytes | None, bytes | None]:
    return record.topic, record.partition, record.offset, record.key, record.value
