"""The topics botify creates carry its retention settings to the broker."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, ConfigResource

from botify.kafka import ensure_topics
from botify.settings import KafkaSettings


def test_created_topics_carry_the_retention_settings(broker_url: str) -> None:
    topic = f"retained-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(
        bootstrap_servers=broker_url,
        listens_topic=topic,
        examples_topic=f"{topic}.examples",  # the default one is shared by the session
        retention_ms=3_600_000,
        retention_bytes=50_000_000,
    )
    ensure_topics(settings)
    admin = AdminClient(settings.client_config())
    for name in (topic, settings.dlq_topic, settings.examples_topic):
        (future,) = admin.describe_configs([ConfigResource("topic", name)]).values()
        config = {key: entry.value for key, entry in future.result(10).items()}
        assert config["retention.ms"] == "3600000", name
        assert config["retention.bytes"] == "50000000", name


def test_no_retention_setting_leaves_the_brokers_default(broker_url: str) -> None:
    topic = f"default-{uuid.uuid4().hex[:8]}"
    settings = KafkaSettings(bootstrap_servers=broker_url, listens_topic=topic, retention_ms=None)
    ensure_topics(settings)
    admin = AdminClient(settings.client_config())
    (future,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert "retention.ms" not in {k for k, e in future.result(10).items() if not e.is_default}
