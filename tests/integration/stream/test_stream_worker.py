"""A real stream worker (subprocess) against the real broker and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from botify import keys
from botify.events import ListenEvent, decode_listen_event
from botify.kafka import ListenPublisher, ensure_topics
from botify.settings import KafkaSettings, Settings
from botify.state import Position, StateConfig, UserState, apply_listen
from tests.factories import listen

pytestmark = pytest.mark.slow


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def stream_worker(
    bootstrap: str, redis_url: str, topic: str, log: Path
) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    env = {
        **os.environ,
        "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "BOTIFY_KAFKA__LISTENS_TOPIC": topic,
        "BOTIFY_REDIS__URL": redis_url,
        # A new consumer group each time: it reads the topic from the start.
        "BOTIFY_STREAM__APP_ID": f"test-{uuid.uuid4().hex[:8]}",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.stream"], env=env, stdout=out, stderr=out
        )
        try:
            wait_for(lambda: "stream worker ready" in log.read_text(), 60, "the worker to be ready")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def produce(
    kafka: KafkaSettings, events: list[ListenEvent], raw: list[tuple[bytes, bytes]] = ()
) -> None:  # type: ignore[assignment]
    publisher = ListenPublisher(kafka)
    for e in events:
        publisher.publish(e)
    for key, value in raw:
        publisher.publish_raw(kafka.listens_topic, key, value)
    assert publisher.flush(10) == 0
    publisher.close()


def read_all(bootstrap: str, topic: str, expected: int) -> list:  # type: ignore[type-arg]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out = []
        deadline = time.monotonic() + 20
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def snapshot(r: redis.Redis) -> dict[bytes, object]:
    """Every key's value, byte for byte (counters aside)."""
    out: dict[bytes, object] = {}
    for key in r.scan_iter("botify:*"):
        if key.startswith(b"botify:stream:"):
            continue
        kind = r.type(key)
        if kind == b"hash":
            out[key] = r.hgetall(key)
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        else:
            out[key] = r.dump(key)
    return out


def sessions() -> list[ListenEvent]:
    events = []
    for user in range(6):
        for s in range(2):
            track = 10 * user + s
            for i in range(3):
                events.append(
                    listen(
                        user=user,
                        track=track,
                        recommendation=track + 100 + i,
                        time=(i + user) % 4 / 4,
                    )
                )
                track += 100 + i
            events.append(listen(user=user, track=track, message="last", time=0.3))
    return events


def test_worker_state_matches_the_pure_fold_and_survives_a_full_replay(
    broker_url: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/5"
    r = redis.Redis.from_url(url)
    r.flushdb()
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic)
    ensure_topics(kafka)
    events = sessions()
    produce(kafka, events)

    with stream_worker(broker_url, url, unique_topic, tmp_path / "w1.log"):
        wait_for(
            lambda: int(r.get(keys.STREAM_APPLIED) or 0) >= len(events), 30, "all events applied"
        )
    # Expected: the same pure fold over the records as the broker ordered them.
    cfg = Settings().state
    expected: dict[int, UserState] = {}
    for msg in sorted(
        read_all(broker_url, unique_topic, len(events)), key=lambda m: (m.partition(), m.offset())
    ):
        e = decode_listen_event(msg.value())
        state = expected.get(e.user, UserState(e.user))
        expected[e.user] = apply_listen(
            state,
            e,
            Position(msg.partition(), msg.offset()),
            StateConfig(cfg.history_size, cfg.fail_threshold),
        ).state
    for user, state in expected.items():
        assert UserState.from_bytes(r.hget(keys.user_state(user), "s")) == state
    before = snapshot(r)

    # A second worker in a new group re-reads every record: as after a crash before commit.
    with stream_worker(broker_url, url, unique_topic, tmp_path / "w2.log"):
        wait_for(lambda: int(r.get(keys.STREAM_DUPLICATES) or 0) >= len(events), 30, "the replay")
    assert snapshot(r) == before
    assert int(r.get(keys.STREAM_APPLIED) or 0) == len(events)


def test_bad_records_are_dead_lettered_with_a_reason_and_good_ones_still_applied(
    broker_url: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/6"
    r = redis.Redis.from_url(url)
    r.flushdb()
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic)
    ensure_topics(kafka)
    bad = [(b"1", b"{not json"), (b"1", b'{"message": "next", "user": 1}')]
    good = [listen(user=1, track=3), listen(user=1, track=4)]
    produce(kafka, [good[0]], bad)
    produce(kafka, [good[1]])
    with stream_worker(broker_url, url, unique_topic, tmp_path / "w.log"):
        wait_for(
            lambda: (
                int(r.get(keys.STREAM_DEAD_LETTERS) or 0) == 2
                and int(r.get(keys.STREAM_APPLIED) or 0) == 2
            ),
            30,
            "dead letters and applied records",
        )
    assert UserState.from_bytes(r.hget(keys.user_state(1), "s")).history == (3, 4)
    dead = read_all(broker_url, kafka.dlq_topic, 2)
    assert sorted(m.value() for m in dead) == sorted(v for _, v in bad)
    for m in dead:
        headers = dict(m.headers())
        assert headers["botify-error"] and headers["botify-source-topic"] == unique_topic.encode()
