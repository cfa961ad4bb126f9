"""Broker restarts. Under an API process: delivery resumes within 30 s and every request
answered 200 after the restart is in the topic. Under the publisher alone, in the pattern
that leaves librdkafka's idempotent producer retrying forever against a broker that forgot
its producer id: the publisher reports the stall, rebuilds the producer and carries the
events it held over to the new one."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from botify.kafka import ListenPublisher, ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import broker_process, free_port
from tests.factories import listen
from tests.integration.api_process import TopicReader, api_process

pytestmark = [pytest.mark.slow]

RECOVERY_S = 30.0
# Requests after delivery resumed, all of which must reach the topic.
AFTER = 40
DOWN_S = 3.0


def test_the_api_delivers_again_within_30_s_of_a_broker_restart(
    tmp_path: Path, redis_url: str, unique_topic: str
) -> None:
    port = free_port()
    broker = f"127.0.0.1:{port}"
    kafka = KafkaSettings(bootstrap_servers=broker, listens_topic=unique_topic, partitions=2)
    proc = broker_process(port, tmp_path / "broker-1").start()
    try:
        with (
            api_process(tmp_path, broker, redis_url, unique_topic) as (url, _),
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            for user in range(10):
                assert client.post(f"/next/{user}", json={"track": 1, "time": 1.0}).is_success

            # The memory broker comes back empty: same address, topics re-created, and no
            # memory of the API's producer id.
            proc.stop()
            # Down for a couple of seconds under traffic, as a restart takes.
            down_until = time.monotonic() + DOWN_S
            user = 100
            while time.monotonic() < down_until:
                user += 1
                client.post(f"/next/{user}", json={"track": 1, "time": 1.0})
                time.sleep(0.1)
            proc = broker_process(port, tmp_path / "broker-2").start()
            restarted = time.monotonic()
            ensure_topics(kafka)
            reader = TopicReader(broker, unique_topic)
            try:
                accepted: dict[tuple[str, int], float] = {}
                statuses: list[int] = []
                health: set[int] = set()
                recovered_at = None
                user = 1000
                # Traffic at ~10 requests/s until every event accepted more than a second ago
                # has been read back (some partitions may take events while others are stuck).
                while time.monotonic() - restarted < RECOVERY_S + 5:
                    user += 1
                    resp = client.post(f"/next/{user}", json={"track": 1, "time": 1.0})
                    statuses.append(resp.status_code)
                    now = time.monotonic()
                    if resp.status_code == 200:
                        accepted[("next", user)] = now
                    else:
                        assert resp.status_code == 503, resp.text
                        assert "not being delivered" in resp.text
                    health.add(client.get("/health").status_code)
                    reader.poll(0.1)
                    seen = set(reader.seen)
                    settled = [k for k, t in accepted.items() if t < now - 1.0]
                    if now - restarted > 2.0 and settled and all(k in seen for k in settled):
                        recovered_at = now - restarted
                        break
                assert recovered_at is not None, f"not delivered; statuses {statuses[-5:]}"
                assert recovered_at <= RECOVERY_S
                for _ in range(AFTER):
                    user += 1
                    resp = client.post(f"/next/{user}", json={"track": 1, "time": 1.0})
                    assert resp.status_code == 200, resp.text
                    accepted[("next", user)] = time.monotonic()
                body = client.get("/health").json()
                deadline = time.monotonic() + 20
                while not set(accepted) <= set(reader.seen) and time.monotonic() < deadline:
                    reader.poll(0.2)
                missing = set(accepted) - set(reader.seen)
                print(
                    f"\nbroker restart: delivery resumed after {recovered_at:.1f} s; "
                    f"{len(accepted)} accepted since, {len(missing)} missing; "
                    f"{statuses.count(503)} answered 503; /health statuses {sorted(health)}; "
                    f"producers rebuilt {body['delivery']['producers_rebuilt']}"
                )
                assert not missing
                assert body["status"] == "ok", body
            finally:
                reader.close()
    finally:
        proc.stop()


def test_a_producer_stuck_on_a_restarted_broker_is_rebuilt_and_its_events_carried_over(
    tmp_path: Path, unique_topic: str
) -> None:
    port = free_port()
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{port}",
        listens_topic=unique_topic,
        partitions=2,
        rebuild_after_s=5.0,
    )
    proc = broker_process(port, tmp_path / "broker-1").start()
    publisher = None
    try:
        ensure_topics(kafka)
        publisher = ListenPublisher(kafka, "test", stall_s=3.0)
        for user in range(10):
            publisher.publish(listen(user=user))
        assert publisher.flush(10) == 0
        proc.stop()
        proc = broker_process(port, tmp_path / "broker-2").start()
        restarted = time.monotonic()
        ensure_topics(kafka)
        reader = TopicReader(kafka.bootstrap_servers, unique_topic)
        try:
            sent: set[tuple[str, int]] = set()
            unhealthy = False
            user = 100
            # One event every 0.2 s, until each one sent is read back (at most 30 s).
            while time.monotonic() - restarted < RECOVERY_S:
                user += 1
                publisher.publish(listen(user=user))
                sent.add(("next", user))
                reader.poll(0.2)
                unhealthy = unhealthy or not publisher.status.ok
                if sent <= set(reader.seen):
                    break
            recovered = time.monotonic() - restarted
            status = publisher.status
            print(
                f"\nstuck producer: {len(sent)} events, all delivered {recovered:.1f} s after "
                f"the restart; rebuilt {status.producers_rebuilt}, carried over "
                f"{publisher.stats.carried_over}, failed {status.failed}"
            )
            assert sent <= set(reader.seen), f"{len(sent - set(reader.seen))} not delivered"
            assert status.producers_rebuilt >= 1 and publisher.stats.carried_over > 0
            # The stall was reported while it lasted, and no event was dropped.
            assert unhealthy and status.failed == 0
        finally:
            reader.close()
    finally:
        if publisher is not None:
            publisher.close()
        proc.stop()
