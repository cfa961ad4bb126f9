"""Version pointers: which version of each model readers serve, and version numbers.

Both live in Redis and are shared by every trainer, API and CLI process; each change is one
Lua script, so racing processes never interleave. A publisher's flip only moves a pointer
forward (two racing trainers never move it backwards), and a trainer's only from the version
its candidate was judged against (a rollback meanwhile is not undone unjudged); a rollback
moves it to any version, but only from the version its caller saw (a trainer's flip
meanwhile is not undone unseen). Every move is appended, in the same script, to the model's
promotion history. ``MemoryVersionPointers`` is the same for one process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson
import redis.asyncio as aioredis

from botify import keys
from botify.errors import ArtifactError

Action = Literal["promote", "rollback"]
PROMOTE: Action = "promote"
ROLLBACK: Action = "rollback"
# Moves kept in a model's history: years of hourly promotions, a few hundred KB.
HISTORY_LIMIT = 10_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PointerMove:
    """One move of a model's pointer: to ``version`` from ``previous`` (None: the first)."""

    action: Action
    version: int
    previous: int | None
    at_ms: int

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> PointerMove:
        """Decode one history entry; ``ArtifactError`` says what is wrong with a bad one."""
        try:
            doc = orjson.loads(raw)
            action, previous = doc["action"], doc["previous"]
            if action not in (PROMOTE, ROLLBACK):
                raise ValueError(f"unknown action {action!r}")
            return cls(
                action,
                _version(doc["version"]),
                None if previous is None else _version(previous),
                int(doc["at_ms"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed pointer move {raw!r}: {exc!r}") from None


def _version(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{value!r} is not a version")
    return value


# KEYS: sequence, pointer. ARGV: the highest version on disk. INCR, but never below a version
# that exists: a flushed or restored Redis must not hand out a number already used.
_ALLOCATE = """
local floor = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if current > floor then floor = current end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if seq < floor then redis.call('SET', KEYS[1], floor) end
return redis.call('INCR', KEYS[1])
"""

# The history entry, built here because only the script knows the previous version.
# ARGV[1] is the version and ARGV[2] the time, both integers; the previous one was checked.
_RECORD = """
local function record(action, previous)
  local entry = '{"action":"' .. action .. '","version":' .. ARGV[1] ..
    ',"previous":' .. (previous or 'null') .. ',"at_ms":' .. ARGV[2] .. '}'
  redis.call('RPUSH', KEYS[2], entry)
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
end
"""

# KEYS: pointer, history. ARGV: version, at_ms, history limit, the version the caller expects
# there ('any': no check, '': none). Only ever moves forward, and only from that version.
_FLIP = (
    _RECORD
    + """
local raw = redis.call('GET', KEYS[1])
if ARGV[4] ~= 'any' then
  if ARGV[4] == '' then
    if raw then return 0 end
  elseif not raw or tonumber(raw) ~= tonumber(ARGV[4]) then
    return 0
  end
end
local current = tonumber(raw or '0') or 0
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
record('promote', raw and tostring(current))
return 1
"""
)

# KEYS: pointer, history. ARGV: version, at_ms, history limit, the version the caller saw.
# Returns the version there before: the move happened only if it is the one the caller saw.
_ROLLBACK = (
    _RECORD
    + """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1') or -1
if current ~= tonumber(ARGV[4]) then return current end
redis.call('SET', KEYS[1], ARGV[1])
record('rollback', tostring(current))
return current
"""
)


# ``flip``'s ``expected`` when the caller does not mind which version is there.
ANY: Literal["any"] = "any"
Expected = int | None | Literal["any"]


class VersionPointers(Protocol):
    async def allocate(self, model: str, floor: int) -> int: ...

    async def flip(
        self, model: str, version: int, at_ms: int, expected: Expected = ANY
    ) -> bool: ...

    async def rollback(self, model: str, version: int, seen: int, at_ms: int) -> int | None: ...

    async def current(self, model: str) -> int | None: ...

    async def sequence(self, model: str) -> int: ...

    async def history(self, model: str) -> list[PointerMove]: ...


class RedisVersionPointers:
    """Sequences, pointers and their history in Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client
        self._allocate = client.register_script(_ALLOCATE)
        self._flip = client.register_script(_FLIP)
        self._rollback = client.register_script(_ROLLBACK)

    async def allocate(self, model: str, floor: int) -> int:
        """A new version number, above every one allocated or on disk (``floor``)."""
        keys_ = [keys.model_sequence(model), keys.model_current(model)]
        return int(await self._allocate(keys=keys_, args=[floor]))

    async def flip(self, model: str, version: int, at_ms: int, expected: Expected = ANY) -> bool:
        """Point at ``version`` if it is newer than the current one and, unless ``expected``
        is ``ANY``, the current one is ``expected`` (None: none); True if it moved."""
        keys_ = [keys.model_current(model), keys.model_promotions(model)]
        seen = "" if expected is None else str(expected)
        return bool(await self._flip(keys=keys_, args=[version, at_ms, HISTORY_LIMIT, seen]))

    async def rollback(self, model: str, version: int, seen: int, at_ms: int) -> int | None:
        """Point at ``version`` if the pointer is still at ``seen``. Returns the version
        that was there (None: none): the move happened if and only if it equals ``seen``."""
        keys_ = [keys.model_current(model), keys.model_promotions(model)]
        before = int(await self._rollback(keys=keys_, args=[version, at_ms, HISTORY_LIMIT, seen]))
        return None if before < 0 else before

    async def current(self, model: str) -> int | None:
        raw = await self._redis.get(keys.model_current(model))
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ArtifactError(
                f"{keys.model_current(model)} holds {raw!r}, not a version"
            ) from None

    async def sequence(self, model: str) -> int:
        """The highest version number allocated so far (0: none)."""
        raw = await self._redis.get(keys.model_sequence(model))
        return 0 if raw is None else int(raw)

    async def history(self, model: str) -> list[PointerMove]:
        """The pointer's moves, oldest first (the newest ``HISTORY_LIMIT``)."""
        key = keys.model_promotions(model)
        moves = []
        for index, entry in enumerate(await self._redis.lrange(key, 0, -1)):
            try:
                moves.append(PointerMove.from_bytes(entry))
            except ArtifactError as exc:  # written by hand, or by another program: skipped
                logger.warning("%s[%d]: %s (skipped)", key, index, exc)
        return moves


@dataclass
class MemoryVersionPointers:
    """The same in one process's memory: tests, and stacks without Redis."""

    sequences: dict[str, int] = field(default_factory=dict)
    pointers: dict[str, int] = field(default_factory=dict)
    moves: dict[str, list[PointerMove]] = field(default_factory=dict)

    async def allocate(self, model: str, floor: int) -> int:
        seq = max(self.sequences.get(model, 0), floor, self.pointers.get(model, 0)) + 1
        self.sequences[model] = seq
        return seq

    async def flip(self, model: str, version: int, at_ms: int, expected: Expected = ANY) -> bool:
        previous = self.pointers.get(model)
        if expected != ANY and previous != expected:
            return False
        if (previous or 0) >= version:
            return False
        self._move(model, PointerMove(PROMOTE, version, previous, at_ms))
        return True

    async def rollback(self, model: str, version: int, seen: int, at_ms: int) -> int | None:
        previous = self.pointers.get(model)
        if previous == seen:
            self._move(model, PointerMove(ROLLBACK, version, previous, at_ms))
        return previous

    def _move(self, model: str, move: PointerMove) -> None:
        self.pointers[model] = move.version
        history = self.moves.setdefault(model, [])
        history.append(move)
        del history[:-HISTORY_LIMIT]

    async def current(self, model: str) -> int | None:
        return self.pointers.get(model)

    async def sequence(self, model: str) -> int:
        return self.sequences.get(model, 0)

    async def history(self, model: str) -> list[PointerMove]:
        return list(self.moves.get(model, []))
