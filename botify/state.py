"""Per-user state and its pure, replay-safe update.

``apply_listen(state, event, position)`` returns the next state and the side effects the event
causes (popularity increments, a training example). It does no I/O, reads time only from the
event and uses no randomness. The state remembers the ``(partition, offset)`` of the last
event it applied, so a redelivered event (same or older position) changes nothing: replays
after a crash are normal with at-least-once delivery.

Offsets count within one lifetime of a topic: a broker restarted without its data starts
them again at 0. A position therefore names its topic's identity too (``source``: the
cluster id and the topic id, ``botify.kafka.topic_identity``), and an event from another
source is new whatever its offset, where it would otherwise pass for a replay.

The values are frozen msgspec Structs, not dataclasses: a stream worker makes several per
event, and a Struct is built ten times faster than a frozen dataclass. None holds a cycle,
so none is tracked by the garbage collector (``gc=False``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import msgpack
import msgspec

from botify.events import DecodedListen
from botify.training import TrainingExample

# The state's encoder: msgspec writes the same MessagePack bytes as msgpack.packb for these
# values (a test holds them equal) in a third of the time; a worker encodes a state per user
# it commits.
_encode = msgspec.msgpack.Encoder().encode

# 2 appended the open session's listens and time, 3 the position's source; version 1 and
# 2 states are still read, and later versions may only append (readers ignore what they do
# not know).
ENCODING_VERSION = 3


class Position(msgspec.Struct, frozen=True, gc=False):
    partition: int
    offset: int
    # The identity of the topic lifetime the offset counts in; None: unknown (states written
    # before version 3, tools that fold without a broker), then offsets are compared as ever.
    source: str | None = None

    def supersedes(self, other: Position | None) -> bool:
        # A user's events share one partition; after a repartition we cannot compare
        # offsets, so an event from another partition is taken as new. Nor can we across
        # two lifetimes of the topic: the old one's records are gone, so the event is new.
        return (
            other is None
            or self.partition != other.partition
            or self.offset > other.offset
            or (self.source != other.source and None not in (self.source, other.source))
        )


@dataclass(frozen=True, slots=True)
class StateConfig:
    history_size: int = 50
    fail_threshold: float = 0.5


class UserState(msgspec.Struct, frozen=True, gc=False):
    """What the platform knows of a user. Tuples, newest last."""

    user: int
    history: tuple[int, ...] = ()
    history_times: tuple[float, ...] = ()
    in_session: bool = False
    session_start: int | None = None
    session_tracks: tuple[int, ...] = ()
    fail_count: int = 0
    listens: int = 0
    sessions: int = 0
    position: Position | None = None
    # The open session's listens and listen time so far, as the analysis counts a session:
    # every event after the previous ``last``, up to and including the next ``last``.
    session_listens: int = 0
    session_time: float = 0.0

    def to_bytes(self) -> bytes:
        pos = None if self.position is None else (self.position.partition, self.position.offset)
        return _encode(
            (
                ENCODING_VERSION,
                self.user,
                self.history,
                self.history_times,
                self.in_session,
                self.session_start,
                self.session_tracks,
                self.fail_count,
                self.listens,
                self.sessions,
                pos,
                self.session_listens,
                self.session_time,
                None if self.position is None else self.position.source,
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        fields = msgpack.unpackb(raw)
        ver = fields[0]
        if ver == 1:  # written before sessions were totalled: an open session restarts at 0
            fields = [*fields, 0, 0.0]
        elif ver < 1:
            raise ValueError(f"unknown UserState encoding version {ver}")
        # Before version 3 the source was not known.
        source = fields[13] if len(fields) > 13 else None
        # Fields are only ever appended: a later version's extra fields are left for it, so
        # a rollback reads what a newer worker wrote.
        (_, user, hist, times, in_s, start, sess, fails, listens, sessions, pos, s_n, s_t) = fields[
            :13
        ]
        return cls(
            user=user,
            history=tuple(hist),
            history_times=tuple(times),
            in_session=in_s,
            session_start=start,
            session_tracks=tuple(sess),
            fail_count=fails,
            listens=listens,
            sessions=sessions,
            position=None if pos is None else Position(pos[0], pos[1], source),
            session_listens=s_n,
            session_time=s_t,
        )


class TrackPlay(msgspec.Struct, frozen=True, gc=False):
    """A popularity increment: one play of ``track`` with ``time`` listened."""

    track: int
    time: float


class SessionEnd(msgspec.Struct, frozen=True, gc=False):
    """A session a ``last`` event closed: its listens and their total listen time, the
    same figures the analysis computes for it from the exported events."""

    listens: int
    time: float


class Transition(msgspec.Struct, frozen=True, gc=False):
    state: UserState
    applied: bool
    plays: tuple[TrackPlay, ...] = ()
    # The listen as a training example, when it continues a session (see ``session_example``).
    example: TrainingExample | None = None
    # Set when the event is a ``last``: the session it closed.
    ended: SessionEnd | None = None


class UserCommit(msgspec.Struct, frozen=True, gc=False):
    """One user's events of a batch, folded in memory: ``state`` after the last one applied,
    the popularity of every one applied. A store writes it only if the user's stored position
    is still ``expected`` (the one the fold started from): compare-and-set, so a concurrent
    writer can never make it count a listen twice."""

    state: UserState
    expected: Position | None
    plays: tuple[TrackPlay, ...]


def apply_listen(
    state: UserState,
    event: DecodedListen,
    position: Position,
    config: StateConfig = StateConfig(),
) -> Transition:
    """Fold one listen event into the user's state; a replayed event is a no-op.

    ``fold_listens`` is its batch twin (the stream's fast path; this one is its fallback),
    held equal by the property test in tests/unit/test_state.py: a change to one is made
    to both."""
    last = state.position
    # not position.supersedes(last), inline: this runs per event.
    if (
        last is not None
        and position.partition == last.partition
        and position.offset <= last.offset
        and (position.source == last.source or position.source is None or last.source is None)
    ):
        return Transition(state, False)
    n = config.history_size
    history = (state.history + (event.track,))[-n:]
    times = (state.history_times + (event.time,))[-n:]
    fails = state.fail_count + 1 if event.time < config.fail_threshold else 0
    plays = (TrackPlay(event.track, event.time),)
    example = session_example(state, event, position)
    # A ``last`` with no open session is a session of one listen, as the analysis has it.
    listens = (state.session_listens if state.in_session else 0) + 1
    listened = (state.session_time if state.in_session else 0.0) + event.time
    # UserState(...) positionally rather than a replace() of the old one: this runs per
    # event, and replace looks the fields up by name each time.
    if event.message == "last":
        new = UserState(
            state.user,
            history,
            times,
            False,
            None,
            (),
            fails,
            state.listens + 1,
            state.sessions,
            position,
            0,
            0.0,
        )
        return Transition(new, True, plays, example, SessionEnd(listens, listened))
    assert event.recommendation is not None  # guaranteed by the event's validation
    if state.in_session:
        start, tracks, sessions = state.session_start, state.session_tracks, state.sessions
    else:
        start, tracks, sessions = event.track, (), state.sessions + 1
    session_tracks = tracks
    for t in (event.track, event.recommendation):
        if t not in session_tracks:
            session_tracks += (t,)
    new = UserState(
        state.user,
        history,
        times,
        True,
        start,
        session_tracks,
        fails,
        state.listens + 1,
        sessions,
        position,
        listens,
        listened,
    )
    return Transition(new, True, plays, example)


def session_example(
    state: UserState, event: DecodedListen, position: Position
) -> TrainingExample | None:
    """The training example ``event`` makes, given the state before it.

    A session's first ``next`` carries its start track with a synthetic time: nothing was
    listened after a context yet, so it is no example. Every later event of the session, the
    ``last`` included, is one, its context being the session's previously listened track."""
    if not state.in_session or not state.history or state.session_start is None:
        return None
    # Positional (this runs per event): timestamp, user, session_start, context, track,
    # time, partition, offset, and the recommender: the user's arm chose the track this
    # event reports, as it chooses the next one.
    return TrainingExample(
        event.timestamp,
        event.user,
        state.session_start,
        state.history[-1],
        event.track,
        event.time,
        position.partition,
        position.offset,
        event.recommender,
    )


class FoldedListens(msgspec.Struct, frozen=True, gc=False):
    """What ``fold_listens`` made of one user's events: the same as ``apply_listen`` over
    them one by one, without the states in between."""

    # After the last event applied (the state given, if none was).
    state: UserState
    # The tags of the events applied, and of the replays among them.
    applied: list[int]
    duplicates: list[int]
    # The events applied, in order.
    events: list[DecodedListen]
    # One play per event applied, in order.
    plays: tuple[TrackPlay, ...]
    # In order: the ``example`` of each transition that has one.
    examples: list[TrainingExample]
    # Per ``last`` applied: the event and the session it closed.
    ended: list[tuple[DecodedListen, SessionEnd]]


def fold_listens(
    state: UserState,
    listens: Iterable[tuple[int, DecodedListen, Position]],
    config: StateConfig = StateConfig(),
    examples_wanted: bool = True,
) -> FoldedListens:
    """Fold a user's events into its state in one pass: exactly what ``apply_listen`` gives
    applied to each in turn (a property test holds them equal: a change to one is made to
    both), without the states in between; without ``examples_wanted`` it makes no training
    examples (a worker that publishes none need not build them). ``listens`` are (tag,
    event, position): the result names events by their tags (the stream's: their indices
    in the batch). The stream folds a batch per user with it."""
    n, threshold = config.history_size, config.fail_threshold
    history, times = state.history, state.history_times
    in_session, start, tracks = state.in_session, state.session_start, state.session_tracks
    fails, listens_total, sessions = state.fail_count, state.listens, state.sessions
    last, s_listens, s_time = state.position, state.session_listens, state.session_time
    applied: list[int] = []
    duplicates: list[int] = []
    events: list[DecodedListen] = []
    plays: list[TrackPlay] = []
    examples: list[TrainingExample] = []
    ended: list[tuple[DecodedListen, SessionEnd]] = []
    for tag, event, position in listens:
        # As apply_listen: not position.supersedes(last), inline.
        if (
            last is not None
            and position.partition == last.partition
            and position.offset <= last.offset
            and (position.source == last.source or position.source is None or last.source is None)
        ):
            duplicates.append(tag)
            continue
        track, listened = event.track, event.time
        if examples_wanted and in_session and history and start is not None:  # session_example
            examples.append(
                TrainingExample(
                    event.timestamp,
                    event.user,
                    start,
                    history[-1],
                    track,
                    listened,
                    position.partition,
                    position.offset,
                    event.recommender,
                )
            )
        history = (history + (track,))[-n:]
        times = (times + (listened,))[-n:]
        fails = fails + 1 if listened < threshold else 0
        plays.append(TrackPlay(track, listened))
        count = (s_listens if in_session else 0) + 1
        total = (s_time if in_session else 0.0) + listened
        listens_total += 1
        last = position
        applied.append(tag)
        events.append(event)
        if event.message == "last":
            ended.append((event, SessionEnd(count, total)))
            in_session, start, tracks, s_listens, s_time = False, None, (), 0, 0.0
            continue
        assert event.recommendation is not None  # guaranteed by the event's validation
        if not in_session:
            start, tracks, sessions = track, (), sessions + 1
        for t in (track, event.recommendation):
            if t not in tracks:
                tracks += (t,)
        in_session, s_listens, s_time = True, count, total
    if applied:
        state = UserState(
            state.user,
            history,
            times,
            in_session,
            start,
            tracks,
            fails,
            listens_total,
            sessions,
            last,
            s_listens,
            s_time,
        )
    return FoldedListens(state, applied, duplicates, events, tuple(plays), examples, ended)


def fold_each(
    state: UserState,
    listens: Iterable[tuple[int, DecodedListen, Position]],
    config: StateConfig = StateConfig(),
) -> tuple[FoldedListens, list[tuple[int, Exception]]]:
    """``apply_listen`` over a user's events one at a time, as ``fold_listens`` gives them
    in one pass: the stream's fallback when that raises (it finds the event at fault), and
    the per-event baseline the CPU bench compares it with. An event ``apply_listen`` raises
    on is skipped and returned with its error, by tag, so the others still apply."""
    applied: list[int] = []
    duplicates: list[int] = []
    events: list[DecodedListen] = []
    plays: list[TrackPlay] = []
    examples: list[TrainingExample] = []
    ended: list[tuple[DecodedListen, SessionEnd]] = []
    failed: list[tuple[int, Exception]] = []
    for tag, event, position in listens:
        try:
            t = apply_listen(state, event, position, config)
        except Exception as exc:  # a bad event or a bug: the caller sets it aside
            failed.append((tag, exc))
            continue
        if not t.applied:
            duplicates.append(tag)
            continue
        applied.append(tag)
        events.append(event)
        plays += t.plays
        if t.example is not None:
            examples.append(t.example)
        if t.ended is not None:
            ended.append((event, t.ended))
        state = t.state
    folded = FoldedListens(state, applied, duplicates, events, tuple(plays), examples, ended)
    return folded, failed
