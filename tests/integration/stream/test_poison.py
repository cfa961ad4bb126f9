"""Records that cannot be processed never stop a stream worker: a record near the broker's
size limit is dead-lettered as a bounded copy with its coordinates, and SIGTERM stops a
worker within its grace period even while it is retrying."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from botify import keys
from botify.kafka import ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import broker_process, free_port
from tests.factories import listen
from tests.integration.stream.harness import (
    Worker,
    counter,
    own_db,
    own_stack,
    produce,
    read_topic,
    wait_for,
    wait_until_redis_matches_the_fold,
)

pytestmark = pytest.mark.slow

POISON = b'{"pad":"' + b"a" * 1_010_000 + b'"}'
DEAD_LETTER_MAX_BYTES = 65_536


def produce_poison(bootstrap: str, topic: str) -> tuple[int, int]:
    """The ≈1 MB record of issue 12, sent by a producer that allows it; its coordinates."""
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 2_000_000})
    where: list[tuple[int, int]] = []

    def delivered(err, msg) -> None:  # type: ignore[no-untyped-def]
        assert err is None, err
        where.append((msg.partition(), msg.offset()))

    producer.produce(topic, POISON, b"77", on_delivery=delivered)
    assert producer.flush(20) == 0
    return where[0]


def test_a_poison_record_is_dead_lettered_cut_and_every_other_partition_goes_on(
    broker_url: str, redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    url, r, kafka = own_stack(broker_url, redis_url, unique_topic, 13)
    partition, offset = produce_poison(broker_url, unique_topic)
    # After the poison, on its partition and every other one.
    good = [listen(user=u % 40, track=u % 7) for u in range(400)]
    produce(kafka, good)
    worker = Worker(broker_url, url, unique_topic, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log")
    try:
        worker.start().wait_ready()
        wait_for(lambda: counter(r, keys.STREAM_APPLIED) == len(good), 60, "the good events")
        # The reference skips the poison alone: every other record is a state it expects.
        asyncio.run(
            wait_until_redis_matches_the_fold(
                r, broker_url, unique_topic, len(good) + 1, invalid=[POISON]
            )
        )
        [dead] = read_topic(broker_url, kafka.dlq_topic, 1)
        headers = {k: v.decode() for k, v in dead.headers()}
        assert dead.key() == b"77" and dead.value() == POISON[:DEAD_LETTER_MAX_BYTES]
        assert headers["botify-truncated"] == "value"
        assert headers["botify-source-value-size"] == str(len(POISON))
        assert headers["botify-source-topic"] == unique_topic
        assert (headers["botify-source-partition"], headers["botify-source-offset"]) == (
            str(partition),
            str(offset),
        )
        assert "Field required" in headers["botify-error"]  # the reason: not a listen event
        assert counter(r, keys.STREAM_DEAD_LETTERS) == 1
        assert counter(r, keys.STREAM_SKIPPED) == 0
        started = time.monotonic()
        assert worker.stop() == 0
        print(f"stopped {time.monotonic() - started:.2f} s after SIGTERM")
    finally:
        worker.kill()


def test_sigterm_stops_a_worker_that_is_retrying_within_its_grace_period(
    broker_url: str, unique_topic: str, tmp_path: Path
) -> None:
    # A Redis that is not there: the worker retries loading its batch's users, forever.
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    kafka = KafkaSettings(bootstrap_servers=broker_url, listens_topic=unique_topic)
    ensure_topics(kafka)
    produce(kafka, [listen(user=u) for u in range(20)])
    grace = 5.0
    worker = Worker(
        broker_url,
        nowhere,
        unique_topic,
        f"t-{uuid.uuid4().hex[:8]}",
        tmp_path / "w.log",
        {"BOTIFY_STREAM__SHUTDOWN_GRACE_S": str(grace)},
    )
    try:
        worker.start().wait_ready()
        wait_for(lambda: "retrying" in worker.text(), 30, "the worker to be retrying")
        time.sleep(3)  # deep in the backoff: its delay is at its 2 s cap by now
        started = time.monotonic()
        code = worker.stop(timeout=grace + 5)
        took = time.monotonic() - started
        print(f"stopped {took:.2f} s after SIGTERM, exit code {code}")
        assert took < grace and code == 0
        assert "stream worker stopped" in worker.text()
    finally:
        worker.kill()


def test_sigterm_stops_a_worker_whose_broker_is_gone_within_its_grace_period(
    redis_url: str, unique_topic: str, tmp_path: Path
) -> None:
    # Its broker dies under it: the final commit and the group's leave have nobody to answer.
    broker = broker_process(free_port(), log_dir=tmp_path / "broker").start()
    bootstrap = f"127.0.0.1:{broker.port}"
    kafka = KafkaSettings(bootstrap_servers=bootstrap, listens_topic=unique_topic)
    ensure_topics(kafka)
    grace = 3.0
    env = {"BOTIFY_STREAM__SHUTDOWN_GRACE_S": str(grace)}
    url = own_db(redis_url, 12)
    worker = Worker(
        bootstrap, url, unique_topic, f"t-{uuid.uuid4().hex[:8]}", tmp_path / "w.log", env
    )
    try:
        worker.start().wait_ready()
        produce(kafka, [listen(user=u) for u in range(20)])
        wait_for(
            lambda: counter(redis.Redis.from_url(url), keys.STREAM_APPLIED) == 20, 30, "events"
        )
        broker.stop()
        time.sleep(1)
        started = time.monotonic()
        code = worker.stop(timeout=grace + 10)
        took = time.monotonic() - started
        print(f"stopped {took:.2f} s after SIGTERM with its broker gone, exit code {code}")
        assert took < grace + 1.0
    finally:
        worker.kill()
        broker.stop()
