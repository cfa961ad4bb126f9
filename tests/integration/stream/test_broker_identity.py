"""A broker restarted without its data starts every offset again at 0. The stream's stored
positions name the topic's identity (cluster id and topic id), so the new broker's events are
applied, not mistaken for replays of the old one's (issue 12: 915 of 9,029 were dropped)."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest

from botify import keys
from botify.kafka import ensure_topics, topic_identity
from botify.settings import KafkaSettings
from botify_cli.processes import broker_process, free_port
from tests.factories import listen
from tests.integration.stream.harness import (
    Worker,
    counter,
    own_db,
    produce,
    stored_states,
    wait_for,
)

pytestmark = pytest.mark.slow

USERS = 20


def test_a_broker_restarted_without_its_data_loses_no_event_to_old_positions(
    redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    import redis

    url = own_db(redis_url, 14)
    r = redis.Redis.from_url(url)
    group = f"t-{uuid.uuid4().hex[:8]}"
    first = [listen(user=i % USERS, track=i % 50) for i in range(400)]
    second = [listen(user=i % USERS, track=100 + i % 50) for i in range(200)]
    identities = []
    for round_, events in enumerate((first, second)):
        # A broker of the test's own, memory only: stopping it loses every record.
        broker = broker_process(free_port(), log_dir=tmp_path / f"broker{round_}").start()
        worker = None
        try:
            bootstrap = f"127.0.0.1:{broker.port}"
            kafka = KafkaSettings(bootstrap_servers=bootstrap, listens_topic=unique_topic)
            ensure_topics(kafka)
            identities.append(topic_identity(kafka, unique_topic))
            log = tmp_path / f"w{round_}.log"
            worker = Worker(bootstrap, url, unique_topic, group, log).start().wait_ready()
            produce(kafka, events)
            applied = len(first) + (len(second) if round_ else 0)
            wait_for(
                lambda: counter(r, keys.STREAM_APPLIED) >= applied,  # noqa: B023
                60,
                f"the events of broker {round_}",
            )
            assert worker.stop() == 0
        finally:
            if worker is not None:
                worker.kill()
            broker.stop()
    assert identities[0] != identities[1]
    # Every event of both brokers applied once: none skipped as a duplicate.
    assert counter(r, keys.STREAM_APPLIED) == len(first) + len(second)
    assert counter(r, keys.STREAM_DUPLICATES) == 0
    per_user = Counter(e.user for e in first + second)
    states = stored_states(r, sorted(per_user))
    assert {u: s.listens for u, s in states.items() if s is not None} == dict(per_user)
    assert all(s is not None and s.position.source == identities[1] for s in states.values())


def test_a_running_worker_meets_a_broker_restarted_without_its_data_and_loses_no_event(
    redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    import redis

    url = own_db(redis_url, 15)
    r = redis.Redis.from_url(url)
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap, listens_topic=unique_topic)
    first = [listen(user=i % USERS, track=i % 50) for i in range(400)]
    second = [listen(user=i % USERS, track=100 + i % 50) for i in range(200)]
    broker = broker_process(port, log_dir=tmp_path / "broker0").start()
    env = {"BOTIFY_KAFKA__SESSION_TIMEOUT_MS": "3000"}
    worker = Worker(
        bootstrap, url, unique_topic, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log", env
    )
    try:
        ensure_topics(kafka)
        before = topic_identity(kafka, unique_topic)
        worker.start().wait_ready()
        produce(kafka, first)
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) == len(first), 60, "the first events")
        broker.stop()
        # The same address, no data: the worker's offsets now point past the new topic's end.
        broker = broker_process(port, log_dir=tmp_path / "broker1").start()
        ensure_topics(kafka)
        assert topic_identity(kafka, unique_topic) != before
        produce(kafka, second)
        total = len(first) + len(second)
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) == total, 90, "the second broker's events")
        assert counter(r, keys.STREAM_DUPLICATES) == 0
        per_user = Counter(e.user for e in first + second)
        states = stored_states(r, sorted(per_user))
        assert {u: s.listens for u, s in states.items() if s is not None} == dict(per_user)
        assert worker.stop() == 0
    finally:
        worker.kill()
        broker.stop()
