"""A real stream worker (subprocess) against the real broker and Redis.

One worker serves the module: it folds events exactly as ``apply_listen`` does, a second
group replaying the whole topic changes nothing, and bad records go to the dead-letter topic.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from botify import keys
from botify.events import ListenEvent, encode_listen_event
from botify.kafka import ensure_topics
from botify.settings import KafkaSettings
from tests.factories import listen
from tests.integration.stream.harness import (
    CATALOG_TRACKS,
    Worker,
    counter,
    own_db,
    produce,
    read_topic,
    snapshot,
    stored_states,
    wait_for,
    wait_until_redis_matches_the_fold,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kafka(broker_url: str) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=broker_url, listens_topic=f"botify.test.{uuid.uuid4().hex[:12]}.v1"
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def store_url(redis_url: str) -> str:
    return own_db(redis_url, 5)


@pytest.fixture(scope="module")
def worker(
    kafka: KafkaSettings, store_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    log = tmp_path_factory.mktemp("stream") / "worker.log"
    w = Worker(kafka.bootstrap_servers, store_url, kafka.listens_topic, _group(), log)
    try:
        yield w.start().wait_ready()
    finally:
        assert w.stop() == 0, w.text()[-3000:]


def _group() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def sessions(users: range) -> list[ListenEvent]:
    """Two finished sessions per user: three ``next`` each, then a ``last``."""
    events = []
    for user in users:
        for s in range(2):
            track = 10 * user + s
            for i in range(3):
                rec = track + 100 + i
                events.append(listen(user=user, track=track, recommendation=rec, time=i / 4))
                track = rec
            events.append(listen(user=user, track=track, message="last", time=0.3))
    return events


async def test_state_matches_the_pure_fold_and_a_full_replay_changes_nothing(
    worker: Worker, kafka: KafkaSettings, store_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    events = sessions(range(8))
    produce(kafka, events)
    await wait_until_redis_matches_the_fold(
        r, kafka.bootstrap_servers, kafka.listens_topic, len(events)
    )
    assert counter(r, keys.STREAM_APPLIED) == len(events)
    before = snapshot(r)

    # A new group re-reads every record, as a worker does after a crash before committing.
    replay = Worker(
        kafka.bootstrap_servers, store_url, kafka.listens_topic, _group(), tmp_path / "r.log"
    )
    try:
        replay.start().wait_ready()
        wait_for(lambda: counter(r, keys.STREAM_DUPLICATES) >= len(events), 30, "the replay")
    finally:
        assert replay.stop() == 0, replay.text()[-3000:]
    assert snapshot(r) == before
    assert counter(r, keys.STREAM_APPLIED) == len(events)


def test_bad_records_are_dead_lettered_with_their_source_and_good_ones_applied(
    worker: Worker, kafka: KafkaSettings, r: redis.Redis
) -> None:
    user = 999  # nobody else's: the module's other test shares the worker and topic
    dead_before = counter(r, keys.STREAM_DEAD_LETTERS)
    good = [listen(user=user, track=3), listen(user=user, track=4)]
    key = str(user).encode()
    bad = [
        (key, b"{not json"),
        (key, b'{"schema_version": 1, "message": "next", "user": 999}'),
        (b"5", encode_listen_event(listen(user=user, track=5))),  # keyed to another user
    ]
    produce(kafka, [good[0]], bad)
    produce(kafka, [good[1]])

    wait_for(
        lambda: (
            counter(r, keys.STREAM_DEAD_LETTERS) - dead_before == len(bad)
            and _history(r, user) == (3, 4)
        ),
        30,
        "dead letters and the good records",
    )
    dead = read_topic(kafka.bootstrap_servers, kafka.dlq_topic, len(bad))
    assert sorted(m.value() for m in dead) == sorted(v for _, v in bad)
    reasons = []
    for m in dead:
        headers = dict(m.headers())
        reasons.append(headers["botify-error"].decode())
        assert headers["botify-source-topic"] == kafka.listens_topic.encode()
        # The headers point at the very record that was refused.
        source = _record_at(
            kafka.bootstrap_servers,
            kafka.listens_topic,
            int(headers["botify-source-partition"]),
            int(headers["botify-source-offset"]),
        )
        assert source == (m.key(), m.value())
    assert any("json" in why.lower() for why in reasons)
    assert any("field required" in why.lower() for why in reasons)
    assert any("is not the user id" in why for why in reasons)


def _history(r: redis.Redis, user: int) -> tuple[int, ...]:
    state = stored_states(r, [user])[user]
    return () if state is None else state.history


def _record_at(bootstrap: str, topic: str, partition: int, offset: int) -> tuple[bytes, bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "at"})
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        for _ in range(50):  # bounded: 50 polls of 0.2 s
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                return msg.key(), msg.value()
        raise AssertionError(f"no record at {topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def test_events_for_tracks_not_in_the_catalog_are_dead_lettered_and_never_counted(
    worker: Worker, kafka: KafkaSettings, r: redis.Redis
) -> None:
    user = 998  # nobody else's, as above
    dead_before = counter(r, keys.STREAM_DEAD_LETTERS)
    applied_before = counter(r, keys.STREAM_APPLIED)
    unknown = CATALOG_TRACKS + 12_345
    events = [
        listen(user=user, track=3),
        listen(user=user, track=unknown),  # 300 of these made it TopPop's first (issue 12)
        listen(user=user, track=4, recommendation=unknown),
        listen(user=user, track=5),
    ]
    produce(kafka, events)
    wait_for(
        lambda: (
            counter(r, keys.STREAM_DEAD_LETTERS) - dead_before == 2 and _history(r, user) == (3, 5)
        ),
        30,
        "the unknown tracks dead-lettered and the known ones applied",
    )
    assert counter(r, keys.STREAM_APPLIED) - applied_before == 2
    assert r.hget(keys.TRACK_PLAY_COUNTS, unknown) is None
    assert r.zscore(keys.TRACK_LISTEN_TIME, unknown) is None
    assert stored_states(r, [user])[user].listens == 2  # type: ignore[union-attr]
    dead = [
        m
        for m in read_topic(kafka.bootstrap_servers, kafka.dlq_topic, 2, quiet=1.0)
        if m.key() == str(user).encode()
    ]
    reasons = sorted(dict(m.headers())["botify-error"].decode() for m in dead)
    assert reasons == [
        f"unknown recommendation {unknown}: not in the catalog",
        f"unknown track {unknown}: not in the catalog",
    ]
