"""One API process on free loopback ports, for the fault tests: its own broker (so that a
test can restart it) or the session's, and the session's Redis."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from botify.events import decode_listen_event
from botify.kafka import ensure_topics
from botify.settings import KafkaSettings
from botify_cli.processes import HTTPChild, free_port, http_child


@contextmanager
def api_process(
    log_dir: Path, broker: str, redis_url: str, topic: str, **env: str
) -> Iterator[tuple[str, HTTPChild]]:
    """``python -m services.api`` until the block ends; yields its URL and the child."""
    port = free_port()
    ensure_topics(KafkaSettings(bootstrap_servers=broker, listens_topic=topic, partitions=2))
    environment = {
        "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": broker,
        "BOTIFY_KAFKA__LISTENS_TOPIC": topic,
        "BOTIFY_KAFKA__PARTITIONS": "2",
        "BOTIFY_REDIS__URL": redis_url,
        "BOTIFY_API__PORT": str(port),
        "BOTIFY_METRICS__REQUESTS": "true",
        **env,
    }
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "services.api"]
    child = http_child(command, f"{url}/health", log_dir, "api", 60, environment)
    child.start()
    try:
        yield url, child
    finally:
        try:
            child.stop()
        except Exception:  # exited with an error: it is stopped either way
            child.kill()


class TopicReader:
    """Reads a topic's listen events as they arrive: (message, user) pairs."""

    def __init__(self, broker: str, topic: str) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": broker, "group.id": "fault-reader", "enable.auto.commit": False}
        )
        parts = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self._consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.seen: list[tuple[str, int]] = []

    def poll(self, seconds: float = 0.0) -> int:
        """Takes what has arrived (waiting at most ``seconds`` for the first); how many."""
        new = 0
        msg = self._consumer.poll(seconds)
        while msg is not None:
            if not msg.error():
                event = decode_listen_event(msg.value())
                self.seen.append((event.message, event.user))
                new += 1
            msg = self._consumer.poll(0)
        return new

    def close(self) -> None:
        self._consumer.close()
