"""Helpers for tests that run real stream workers: start/stop one, produce, fold, compare."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Message, TopicPartition

from botify import keys
from botify.errors import InvalidEventError
from botify.events import ListenEvent, decode_listen_event
from botify.kafka import ListenPublisher, ensure_topics, topic_identity
from botify.settings import KafkaSettings, StateSettings
from botify.state import Position, StateConfig, UserState, apply_listen
from botify.storage import InMemoryUserStateStore

READY = "stream worker ready"
# Workers check tracks against their catalog: the tests' events use ids below this.
CATALOG_TRACKS = 20_000


def catalog_file(directory: Path, tracks: int = CATALOG_TRACKS) -> Path:
    """A catalog of track ids 0 .. tracks - 1 in ``directory`` (written once)."""
    path = directory / f"catalog-{tracks}.jsonl"
    if not path.exists():
        lines = (
            orjson.dumps({"track": t, "artist": f"Artist {t % 97}", "title": f"Track {t}"})
            for t in range(tracks)
        )
        path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def own_db(redis_url: str, db: int) -> str:
    """The URL of Redis database ``db`` on the session's server, flushed: a test module's
    own, so modules sharing the server do not see each other's keys."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def own_stack(
    broker_url: str, redis_url: str, topic: str, db: int
) -> tuple[str, redis.Redis, KafkaSettings]:
    """A test's own Redis database (flushed), a client of it, and its listens topic (with
    the dead-letter and examples topics) created on the session's broker."""
    url = own_db(redis_url, db)
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=topic)
    ensure_topics(kafka)
    return url, redis.Redis.from_url(url), kafka


def wait_for(condition: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Worker:
    """``python -m services.stream`` as a child process, configured by environment only."""

    bootstrap: str
    redis_url: str
    topic: str
    group: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> Worker:
        env = {
            **os.environ,
            "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "BOTIFY_KAFKA__LISTENS_TOPIC": self.topic,
            "BOTIFY_REDIS__URL": self.redis_url,
            "BOTIFY_STREAM__APP_ID": self.group,
            # Several workers run at once: each serves its metrics on a port of its own.
            "BOTIFY_METRICS__STREAM_PORT": "0",
            "BOTIFY_RUN_DIR": str(self.log.parent / "runs"),
            "BOTIFY_CATALOG__PATH": str(catalog_file(self.log.parent)),
            **self.env,
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.stream"], env=env, stdout=out, stderr=out
            )
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> Worker:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.text()[-3000:]
            return READY in self.text()

        wait_for(ready, timeout, f"worker {self.log.name} to be ready")
        return self

    def kill(self) -> None:
        """SIGKILL the worker if it still runs: a test's clean-up, whatever it asserted."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        """Signal the worker and wait for it; returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"worker {self.log.name} ignored signal {sig} for {timeout} s"
            ) from None


def produce(
    kafka: KafkaSettings,
    events: list[ListenEvent],
    raw: list[tuple[bytes | None, bytes]] = (),  # type: ignore[assignment]
    per_second: float | None = None,
) -> None:
    """Publish events (at a steady rate if asked), then raw records, and flush."""
    publisher = ListenPublisher(kafka, "test")
    try:
        start = time.monotonic()
        for i, e in enumerate(events):
            if per_second is not None:
                time.sleep(max(0.0, start + i / per_second - time.monotonic()))
            publisher.publish(e)
        for key, value in raw:
            publisher.publish_raw(kafka.listens_topic, key, value)
        assert publisher.flush(10) == 0
    finally:
        publisher.close()


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 20, quiet: float = 0.5
) -> list[Message]:
    """Every record of ``topic``, by partition and offset: at least ``expected``, then until
    nothing new arrives for ``quiet`` seconds. (Tansu's high watermarks cannot tell the end:
    it reports 1 for a partition holding 16 records.)"""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False}
    )
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            msg = consumer.poll(0.05)
            if msg is not None and not msg.error():
                out.append(msg)
                last_new = time.monotonic()
            elif len(out) >= expected and time.monotonic() - last_new > quiet:
                break
        assert len(out) >= expected, f"read {len(out)} of {expected} records of {topic}"
        return sorted(out, key=lambda m: (m.partition(), m.offset()))
    finally:
        consumer.close()


async def fold_topic(
    bootstrap: str, topic: str, expected: int, invalid: Collection[bytes] = ()
) -> tuple[dict[int, UserState], InMemoryUserStateStore]:
    """What the workers should have written: apply_listen over the records in broker order,
    committed once each to an in-memory store (for popularity). ``invalid`` holds the values
    of the records the test made invalid on purpose: those are skipped (the worker
    dead-letters them), and any other record that does not decode fails the test, so a
    decoder that refuses good events cannot pass by refusing them in both places."""
    cfg = StateSettings()
    config = StateConfig(cfg.history_size, cfg.fail_threshold)
    store = InMemoryUserStateStore()
    states: dict[int, UserState] = {}
    source = topic_identity(KafkaSettings(bootstrap_servers=bootstrap), topic)
    for msg in read_topic(bootstrap, topic, expected):
        value = msg.value()
        if value is not None and value in invalid:
            with pytest.raises(InvalidEventError):
                decode_listen_event(value)
            continue
        e = decode_listen_event(value)
        t = apply_listen(
            states.get(e.user, UserState(e.user)),
            e,
            Position(msg.partition(), msg.offset(), source),
            config,
        )
        await store.commit(t)
        states[e.user] = t.state
    return states, store


async def wait_until_redis_matches_the_fold(
    r: redis.Redis,
    bootstrap: str,
    topic: str,
    n: int,
    timeout: float = 30,
    invalid: Collection[bytes] = (),
) -> dict[int, UserState]:
    """Waits (bounded) for every user's state to equal the fold of the topic's ``n`` records
    (``invalid`` as ``fold_topic`` takes it), then checks popularity too. Returns the
    expected states."""
    states, popularity = await fold_topic(bootstrap, topic, n, invalid)
    users = sorted(states)
    wait_for(lambda: stored_states(r, users) == states, timeout, "states to match the fold")
    for track in sorted({t for s in states.values() for t in s.history}):
        plays, listened = await popularity.track_stats(track)
        assert int(r.hget(keys.TRACK_PLAY_COUNTS, track) or 0) == plays
        # Float sums: the worker adds in its own interleaving of partitions.
        assert float(r.zscore(keys.TRACK_LISTEN_TIME, track) or 0.0) == pytest.approx(listened)
    return states


def stored_states(r: redis.Redis, users: list[int]) -> dict[int, UserState | None]:
    raws = [r.hget(keys.user_state(u), "s") for u in users]
    return {
        u: None if raw is None else UserState.from_bytes(raw)
        for u, raw in zip(users, raws, strict=True)
    }


def counter(r: redis.Redis, name: str) -> int:
    return int(r.get(name) or 0)


def snapshot(r: redis.Redis) -> dict[bytes, object]:
    """Every botify key's value, byte for byte (the stream's own counters aside)."""
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
