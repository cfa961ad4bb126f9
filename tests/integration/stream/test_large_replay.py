"""A 100,000-event backlog through a real worker: every user's state equals the pure fold.

The worker meets the whole batch at once, as after an outage or a crash: its batches are
full, each folds many events per user in memory and commits all users in one round trip.
A second group then replays the topic and changes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from botify import keys
from botify.events import ListenEvent, make_listen_event
from tests.integration.stream.harness import (
    Worker,
    counter,
    fold_topic,
    own_stack,
    produce,
    snapshot,
    wait_for,
)

pytestmark = pytest.mark.slow

EVENTS, USERS, TRACKS = 100_000, 10_000, 2_000


def backlog(seed: int = 0) -> list[ListenEvent]:
    """Sessions of ``USERS`` users, interleaved: about one event in ten ends a session, about
    one in five is a failed listen."""
    rng = np.random.default_rng(seed)
    who, tracks = rng.integers(0, USERS, EVENTS), rng.integers(0, TRACKS, EVENTS + 1)
    times, ends = rng.random(EVENTS).round(2), rng.random(EVENTS) < 0.1
    return [
        make_listen_event(
            event_id=f"b{i}",
            message="last" if ends[i] else "next",
            timestamp=1_700_000_000_000 + i,
            user=int(who[i]),
            track=int(tracks[i]),
            time=float(times[i]),
            recommendation=None if ends[i] else int(tracks[i + 1]),
            latency=0.001,
            recommender="random",
        )
        for i in range(EVENTS)
    ]


def stored_raw_states(r: redis.Redis, users: list[int]) -> list[bytes | None]:
    pipe = r.pipeline(transaction=False)
    for u in users:
        pipe.hget(keys.user_state(u), "s")
    return pipe.execute()


async def test_a_100k_event_backlog_folds_to_the_pure_fold_and_its_replay_changes_nothing(
    broker_url: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    url, r, kafka = own_stack(broker_url, redis_url, unique_topic, 11)
    produce(kafka, backlog())
    expected, popularity = await fold_topic(broker_url, unique_topic, EVENTS)
    users = sorted(expected)

    group = f"t-{uuid.uuid4().hex[:8]}"
    worker = Worker(broker_url, url, unique_topic, group, tmp_path / "w.log").start()
    try:
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) >= EVENTS, 120, "the backlog")
    finally:
        assert worker.stop() == 0, worker.text()[-3000:]
    assert counter(r, keys.STREAM_APPLIED) == EVENTS
    assert counter(r, keys.STREAM_DEAD_LETTERS) == 0
    want = [expected[u].to_bytes() for u in users]
    assert stored_raw_states(r, users) == want  # byte for byte, every user
    tracks = {int(t): int(n) for t, n in r.hgetall(keys.TRACK_PLAY_COUNTS).items()}
    listened = {int(t): s for t, s in r.zrange(keys.TRACK_LISTEN_TIME, 0, -1, withscores=True)}
    for track in range(TRACKS):
        plays, time = await popularity.track_stats(track)
        assert tracks.get(track, 0) == plays
        assert listened.get(track, 0.0) == pytest.approx(time)
    before = snapshot(r)

    replay = Worker(broker_url, url, unique_topic, f"{group}-replay", tmp_path / "r.log").start()
    try:
        wait_for(lambda: counter(r, keys.STREAM_DUPLICATES) >= EVENTS, 120, "the replay")
    finally:
        assert replay.stop() == 0, replay.text()[-3000:]
    assert snapshot(r) == before
    assert counter(r, keys.STREAM_APPLIED) == EVENTS
