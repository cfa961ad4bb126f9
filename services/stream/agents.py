"""The listen-events agent: a thin shell around ``botify.state.apply_listen``.

For each record: decode and validate; load the user's state; fold the event in; commit state,
position and popularity atomically (a Lua script that skips positions already applied).
A record that cannot be processed goes to the dead-letter topic with the reason, and is
counted; nothing is dropped silently and nothing crashes the worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from botify import keys
from botify.errors import InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.state import Position, StateConfig, apply_listen
from botify.storage import UserStateStore

logger = logging.getLogger(__name__)


class DeadLetters(Protocol):
    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class ListenProcessor:
    store: UserStateStore
    dead_letters: DeadLetters
    config: StateConfig

    async def handle(self, record: Record) -> str:
        """Process one record; returns what happened: applied, duplicate or dead_letter."""
        return (await self.handle_batch([record]))[0]

    async def handle_batch(self, records: list[Record]) -> list[str]:
        """Process records in order with two Redis round trips for the whole batch: load the
        users' states, fold every event in memory, commit each transition (pipelined)."""
        outcomes: list[str] = [""] * len(records)
        good: list[tuple[int, ListenEvent, Position]] = []
        for i, record in enumerate(records):
            try:
                event = decode_listen_event(record.value)
                if record.key is not None and record.key != event.key:
                    raise InvalidEventError(
                        f"record key {record.key!r} is not the user id {event.user}"
                    )
            except InvalidEventError as exc:
                await self._dead_letter(record, str(exc))
                outcomes[i] = "dead_letter"
                continue
            good.append((i, event, Position(record.partition, record.offset)))
        if good:
            states = await self.store.load_many(sorted({e.user for _, e, _ in good}))
            transitions = []
            for _, event, position in good:
                t = apply_listen(states[event.user], event, position, self.config)
                states[event.user] = t.state
                transitions.append(t)
            written = await self.store.commit_many(transitions)
            for (i, _, _), ok in zip(good, written, strict=True):
                outcomes[i] = "applied" if ok else "duplicate"
        applied = outcomes.count("applied")
        if applied:
            await self.store.incr(keys.STREAM_APPLIED, applied)
        if len(good) - applied:
            await self.store.incr(keys.STREAM_DUPLICATES, len(good) - applied)
        return outcomes

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
