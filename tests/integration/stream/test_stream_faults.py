"""Stream workers under failure: a Redis restart, killed workers, several workers per group.

The proof each time is the same: Redis ends up exactly as the pure fold of the topic says,
so no event was lost and none was counted twice.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from botify import keys
from botify.events import ListenEvent
from botify.kafka import ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import TCPChild, free_port, redis_binary
from tests.factories import listen
from tests.integration.stream.harness import (
    Worker,
    counter,
    own_stack,
    produce,
    wait_for,
    wait_until_redis_matches_the_fold,
)

pytestmark = pytest.mark.slow


def events(n: int, users: int, first_track: int = 0) -> list[ListenEvent]:
    return [
        listen(user=i % users, track=first_track + i, time=(i % 5) / 4 if i % 7 else 0.0)
        for i in range(n)
    ]


def assigned_partitions(worker: Worker) -> list[int]:
    """The partitions of the listens topic in the worker's latest assignment."""
    lines = re.findall(r"stream worker ready: partitions \[([0-9, ]*)\]", worker.text())
    return [int(p) for p in lines[-1].split(",") if p.strip()] if lines else []


def restartable_redis(port: int, data_dir: Path) -> TCPChild:
    """A Redis of the test's own that keeps its data in ``data_dir`` across restarts."""
    return TCPChild(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir)]
        + ["--save", "", "--appendonly", "no", "--protected-mode", "no"],
        host="127.0.0.1",
        port=port,
        timeout=30,
    )


async def test_a_redis_restart_pauses_the_worker_and_loses_no_event(
    broker_url: str, unique_topic: str, tmp_path: Path
) -> None:
    port = free_port()
    server = restartable_redis(port, tmp_path).start()
    url = f"redis://127.0.0.1:{port}/0"
    r = redis.Redis.from_url(url)
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic)
    ensure_topics(kafka)
    worker = Worker(broker_url, url, unique_topic, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    try:
        worker.start().wait_ready()
        produce(kafka, events(200, users=20))
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) == 200, 20, "the first events")
        r.save()  # the worker is idle: everything it wrote survives the restart
        server.stop()
        produce(kafka, events(200, users=20, first_track=1000))
        time.sleep(1.5)  # the worker meets the outage, and retries a few times
        server = restartable_redis(port, tmp_path).start()
        # Not the applied counter: a batch whose counting failed after its commit is
        # redone, and then counts as duplicates.
        await wait_until_redis_matches_the_fold(r, broker_url, unique_topic, 400)
        assert counter(r, keys.STREAM_DEAD_LETTERS) == 0
        assert "retrying" in worker.text()
        assert worker.stop() == 0
    finally:
        worker.kill()
        server.stop()


async def test_workers_split_the_partitions_and_a_killed_one_loses_nothing(
    broker_url: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    url, r, kafka = own_stack(broker_url, redis_url, unique_topic, 7)
    group = f"t-{uuid.uuid4().hex[:8]}"
    # A short session: the broker notices the killed worker (and admits a joiner) sooner.
    env = {"BOTIFY_KAFKA__SESSION_TIMEOUT_MS": "3000"}
    first = Worker(broker_url, url, unique_topic, group, tmp_path / "w1.log", env)
    second = Worker(broker_url, url, unique_topic, group, tmp_path / "w2.log", env)
    try:
        first.start()
        second.start()
        first.wait_ready()
        second.wait_ready()
        wait_for(
            lambda: (
                sorted(assigned_partitions(first) + assigned_partitions(second))
                == list(range(kafka.partitions))
            ),
            30,
            "the partitions to be split between the two workers",
        )
        assert assigned_partitions(first) and assigned_partitions(second)

        # Events keep flowing while the first worker dies without a chance to commit.
        stream = events(3000, users=64)
        feeder = threading.Thread(target=produce, args=(kafka, stream), kwargs={"per_second": 1000})
        feeder.start()
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) > 500, 20, "processing to start")
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        feeder.join(60)
        # The survivor takes over once the broker expires the dead member's session.
        wait_for(
            lambda: assigned_partitions(second) == list(range(kafka.partitions)),
            30,
            "the survivor to take every partition",
        )
        # Not the applied counter: a killed worker may have written a state and died before
        # counting it, and its replay then counts as a duplicate.
        await wait_until_redis_matches_the_fold(r, broker_url, unique_topic, 3000)
        assert second.stop() == 0
    finally:
        for w in (first, second):
            w.kill()
