"""Redis backend. Values are msgpack; a Lua script makes each commit atomic and replay-safe
(compare-and-set on the position)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import msgspec
import redis.asyncio as aioredis

from botify import keys
from botify.session_log import SessionLog, encode_request, parse_session
from botify.settings import RedisSettings
from botify.state import Transition, UserCommit, UserState
from botify.storage.base import commit_transition
from botify.storage.connection import RedisEndpoint
from botify.storage.pipelined import PipelinedRedis

# KEYS: play-counts hash, listen-time zset, then one state hash per user. ARGV[1]: one
# MessagePack array with a row per user, in KEYS' order: the expected partition and offset
# ('' and '' for a user with no state), the new partition and offset (all four as decimal
# strings, compared as strings: a Lua number is a double, which tells offsets apart only
# up to 2**53, and Python's str(int) is canonical, so equal strings are equal offsets), and
# its plays as {track, time} maps; then ARGV[1 + i]: user i's state blob (the cmsgpack of
# Redis 6.2, which the tests run, refuses MessagePack bin 8/16/32: "Bad data format in
# input"). One packed row rather than an argument per field: the worker packs them in one
# C call. A user is written only if its stored position is the expected one (equality, not
# order: replay safety comes from the fold, which started from that position); the plays
# of the users written are summed per track first, so popularity costs two commands per
# distinct track, not per listen (plays in a hash: HINCRBY costs a third of a ZINCRBY, and
# only listen time is ranked).
_COMMIT_USERS = """
local plays, times, tracks, written = {}, {}, {}, {}
local rows = cmsgpack.unpack(ARGV[1])
for i, row in ipairs(rows) do
  local key = KEYS[i + 2]
  local pos = redis.call('HMGET', key, 'p', 'o')
  local ok
  if row[1] == '' then
    ok = not pos[1]
  else
    ok = pos[1] == row[1] and pos[2] == row[2]
  end
  if ok then
    redis.call('HSET', key, 'p', row[3], 'o', row[4], 's', ARGV[i + 1])
    for _, play in ipairs(row[5]) do
      local t = play.track
      if not plays[t] then
        plays[t], times[t] = 0, 0
        tracks[#tracks + 1] = t
      end
      plays[t] = plays[t] + 1
      times[t] = times[t] + play.time
    end
    written[#written + 1] = 1
  else
    written[#written + 1] = 0
  end
end
for _, t in ipairs(tracks) do
  redis.call('HINCRBY', KEYS[1], t, plays[t])
  redis.call('ZINCRBY', KEYS[2], times[t], t)
end
return written
"""
_encode_rows = msgspec.msgpack.Encoder().encode
# Users per script call: one call blocks Redis for its length (a few µs per user).
COMMIT_USERS_PER_CALL = 500

# Bounds the API-side session list; the simulator caps sessions well below this.
MAX_SESSION_TRACKS = 1000


class RedisUserStateStore:
    def __init__(self, client: aioredis.Redis, fast: PipelinedRedis) -> None:
        self._redis = client
        # The API's per-request commands go through here; see pipelined.py for why.
        self._fast = fast

    @classmethod
    def connect(
        cls, settings: RedisSettings, timeout_s: float | None = None
    ) -> RedisUserStateStore:
        """Both clients on ``settings``; with ``timeout_s`` a command that gets no reply in
        time raises (``BackendUnavailableError`` or redis-py's ``TimeoutError``) instead of
        waiting for Redis to come back."""
        endpoint = RedisEndpoint.from_settings(settings)
        client = aioredis.Redis(
            **endpoint.redis_py_kwargs(),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
        )
        return cls(client, PipelinedRedis(endpoint, timeout_s))

    @classmethod
    def from_url(cls, url: str, timeout_s: float | None = None) -> RedisUserStateStore:
        return cls.connect(RedisSettings(url=url), timeout_s)

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def load(self, user: int) -> UserState:
        # Our clients never decode responses (decode_responses is off): values are bytes.
        raw = cast("bytes | None", await self._redis.hget(keys.user_state(user), "s"))
        return UserState(user) if raw is None else UserState.from_bytes(raw)

    async def load_for_request(self, user: int) -> tuple[UserState, SessionLog]:
        raw, served = await self._fast.call_many(
            ("HGET", keys.user_state(user), "s"),
            ("LRANGE", keys.user_session(user), 0, -1),
        )
        state = UserState(user) if raw is None else UserState.from_bytes(raw)
        return state, parse_session(served)

    async def load_many(self, users: Sequence[int]) -> dict[int, UserState]:
        # The pipelined client: the stream's per-batch commands cost half as much there.
        raws = await self._fast.call_many(*[("HGET", keys.user_state(u), "s") for u in users])
        return {
            u: UserState(u) if raw is None else UserState.from_bytes(raw)
            for u, raw in zip(users, raws, strict=True)
        }

    async def commit(self, transition: Transition) -> bool:
        return await commit_transition(self, transition)

    async def commit_users(self, commits: Sequence[UserCommit]) -> list[bool]:
        # One script call per chunk of users, all chunks in one round trip. Every key of a
        # call must live on one node: this is for one Redis, not a Redis Cluster.
        calls = []
        for first in range(0, len(commits), COMMIT_USERS_PER_CALL):
            chunk = commits[first : first + COMMIT_USERS_PER_CALL]
            keys_: list[object] = [keys.TRACK_PLAY_COUNTS, keys.TRACK_LISTEN_TIME]
            rows = []
            blobs: list[object] = []
            for c in chunk:
                state, exp = c.state, c.expected
                pos = state.position
                assert pos is not None, "a commit carries the position of its last listen"
                keys_.append(keys.user_state(state.user))
                rows.append(
                    (
                        "" if exp is None else str(exp.partition),
                        "" if exp is None else str(exp.offset),
                        str(pos.partition),
                        str(pos.offset),
                        c.plays,
                    )
                )
                blobs.append(state.to_bytes())
            calls.append(("EVAL", _COMMIT_USERS, len(keys_), *keys_, _encode_rows(rows), *blobs))
        replies = await self._fast.call_many(*calls) if calls else []
        return [bool(w) for reply in replies for w in reply]

    async def record_request(self, user: int, track: int, time: float, recommendation: int) -> None:
        key = keys.user_session(user)
        entries = encode_request(track, time, recommendation)
        # Reply not awaited: the connection carries it before any later read, so the user's
        # next request sees it; a failure is logged and counted there.
        await self._fast.send(("RPUSH", key, *entries), ("LTRIM", key, -MAX_SESSION_TRACKS, -1))

    async def end_session(self, user: int) -> None:
        # Awaited, unlike record_request: /last has no read of its own, so without it a
        # stalled Redis would still get a 200 (and a timeout could not reach the client).
        await self._fast.call("DEL", keys.user_session(user))

    async def top_tracks(self, k: int) -> list[int]:
        # Without scores, a range answers the members alone.
        top = cast(list[bytes], await self._redis.zrevrange(keys.TRACK_LISTEN_TIME, 0, k - 1))
        return [int(t) for t in top]

    async def track_stats(self, track: int) -> tuple[int, float]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.TRACK_PLAY_COUNTS, track)
            pipe.zscore(keys.LEGACY_TRACK_PLAYS, track)
            pipe.zscore(keys.TRACK_LISTEN_TIME, track)
            plays, legacy, time = await pipe.execute()
        return int(plays or 0) + int(legacy or 0), float(time or 0.0)

    async def incr(self, counter: str, amount: int = 1) -> None:
        await self._redis.incrby(counter, amount)

    async def incr_many(self, counts: Mapping[str, int]) -> None:
        # Replies not awaited: counters are metrics, and the connection carries them before
        # any later command (a failure is logged and counted there).
        if counts:
            await self._fast.send(*[("INCRBY", k, v) for k, v in counts.items()])

    async def counter(self, counter: str) -> int:
        return int(await self._redis.get(counter) or 0)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._fast.close()
        await self._redis.aclose()
