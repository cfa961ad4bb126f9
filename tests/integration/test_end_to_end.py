"""The walking skeleton, end to end: HTTP in, Kafka events out, stream state in Redis."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition

from botify import keys
from botify.events import ListenEvent, decode_listen_event
from botify.kafka import topic_identity
from botify.settings import KafkaSettings, Settings
from botify.state import Position, StateConfig, UserState, apply_listen
from botify_cli.stack import EmbeddedStack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(Settings(), tmp_path_factory.mktemp("stack")) as running:
        yield running


def play(
    client: httpx.Client, user: int, start: int, steps: int
) -> list[tuple[str, int, float, int | None]]:
    """One botify session; returns (message, track, time, recommendation) per request."""
    sent, track, time_ = [], start, 1.0
    for i in range(steps):
        resp = client.post(f"/next/{user}", json={"track": track, "time": time_})
        assert resp.status_code == 200, resp.text
        rec = resp.json()["track"]
        sent.append(("next", track, time_, rec))
        track, time_ = rec, round((user * 7 + i * 3) % 10 / 10, 2)
    assert client.post(f"/last/{user}", json={"track": track, "time": time_}).status_code == 200
    sent.append(("last", track, time_, None))
    return sent


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout: float = 30
) -> list[tuple[ListenEvent, Position]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "e2e-reader", "enable.auto.commit": False}
    )
    # The stream's positions name the topic's identity: the expected fold's do too.
    source = topic_identity(KafkaSettings(bootstrap_servers=bootstrap), topic)
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        out: list[tuple[ListenEvent, Position]] = []
        deadline = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            event = decode_listen_event(msg.value())
            assert msg.key() == str(event.user).encode()
            out.append((event, Position(msg.partition(), msg.offset(), source)))
        return out
    finally:
        consumer.close()


def test_requests_become_events_and_stream_state_matches_them_exactly(stack: EmbeddedStack) -> None:
    endpoints = stack.endpoints
    assert endpoints is not None
    sent: dict[int, list[tuple[str, int, float, int | None]]] = defaultdict(list)
    with httpx.Client(base_url=endpoints.api, timeout=10) as client:
        for user in (1, 2, 3, 1984):
            for session in range(2):
                sent[user] += play(client, user, start=10 + session, steps=4 + user % 3)
    total = sum(len(v) for v in sent.values())

    records = read_topic(endpoints.broker, Settings().kafka.listens_topic, total)
    assert len(records) == total
    by_user: dict[int, list[tuple[ListenEvent, Position]]] = defaultdict(list)
    for event, pos in records:
        by_user[event.user].append((event, pos))
    for user, rows in by_user.items():
        rows.sort(key=lambda r: r[1].offset)
        got = [(e.message, e.track, e.time, e.recommendation) for e, _ in rows]
        assert got == sent[user]
        assert all(e.recommender and e.experiments for e, _ in rows)

    # Expected stream state: the same pure fold the processor runs.
    config = StateConfig(Settings().state.history_size, Settings().state.fail_threshold)
    expected: dict[int, UserState] = {}
    plays: dict[int, int] = defaultdict(int)
    for user, rows in by_user.items():
        state = UserState(user)
        for event, pos in rows:
            state = apply_listen(state, event, pos, config).state
            plays[event.track] += 1
        expected[user] = state

    r = redis.Redis.from_url(endpoints.redis)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        raw = {u: r.hget(keys.user_state(u), "s") for u in expected}
        if all(
            raw[u] and UserState.from_bytes(raw[u]).listens == s.listens
            for u, s in expected.items()
        ):
            break
        time.sleep(0.2)
    for user, state in expected.items():
        assert UserState.from_bytes(r.hget(keys.user_state(user), "s")) == state
    stored = {int(t): int(n) for t, n in r.hgetall(keys.TRACK_PLAY_COUNTS).items()}
    assert stored == dict(plays)
    # The API's own session list was cleared by /last.
    assert all(not r.exists(keys.user_session(u)) for u in expected)


def test_health_reports_both_backends(stack: EmbeddedStack) -> None:
    assert stack.endpoints is not None
    body = httpx.get(f"{stack.endpoints.api}/health").json()
    assert body["redis"]["ok"] and body["delivery"]["ok"] and body["status"] == "ok"
