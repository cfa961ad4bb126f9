"""``create_app(settings)``: the faust application of the stream workers.

faust only consumes and commits offsets here: state lives in Redis, not in faust tables, so
the API reads exactly what the workers write. Offsets are committed after the agent has
processed a record, hence at-least-once, made harmless by replay-safe state updates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust

from botify.settings import Settings
from botify.state import StateConfig
from botify.storage import open_user_state_store
from services.stream.agents import ListenProcessor, Record
from services.stream.transport import LowLatencyApp

logger = logging.getLogger(__name__)


def broker_urls(bootstrap_servers: str) -> list[str]:
    return [f"kafka://{host.strip()}" for host in bootstrap_servers.split(",") if host.strip()]


class _DeliveredTopic:
    """A faust topic whose ``send`` returns once the broker has the record: the source
    offset is acked after that, so a crash cannot lose a dead letter."""

    def __init__(self, topic: faust.TopicT) -> None:
        self._topic = topic

    async def send(
        self, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        delivery = await self._topic.send(key=key, value=value, headers=headers)
        await delivery


class _ExampleTopic:
    """The training examples topic: a batch's records are sent together and awaited
    together, so the batch pays one round of broker latency, not one per example."""

    def __init__(self, topic: faust.TopicT) -> None:
        self._topic = topic

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        deliveries = [await self._topic.send(key=key, value=value) for key, value in records]
        await asyncio.gather(*deliveries)


def _record(message: Any) -> Record:
    return Record(message.topic, message.partition, message.offset, message.key, message.value)


def create_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    # faust creates a data directory even with in-memory tables; keep it out of cwd.
    datadir = settings.run_dir / "stream" / settings.stream.app_id
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = LowLatencyApp(
        settings.stream.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=kafka.partitions,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # A group's first join waits about half the session timeout (Tansu and Kafka alike).
        broker_session_timeout=kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=1.0,
        broker_commit_every=100,
        broker_commit_interval=0.5,
    )
    listens = app.topic(kafka.listens_topic, key_serializer="raw", value_serializer="raw")
    dead_letters = app.topic(kafka.dlq_topic, key_serializer="raw", value_serializer="raw")
    examples = app.topic(kafka.examples_topic, key_serializer="raw", value_serializer="raw")
    processor = ListenProcessor(
        store=open_user_state_store(settings.redis.url),
        dead_letters=_DeliveredTopic(dead_letters),
        config=StateConfig(settings.state.history_size, settings.state.fail_threshold),
        examples=_ExampleTopic(examples) if settings.stream.examples else None,
    )

    @app.agent(listens, name="listens")
    async def fold_listens(stream: Any) -> None:
        # Batches amortise Redis round trips; `within` bounds the delay a batch adds.
        # noack_take: faust acks (and then commits) only what we ack, after the batch is
        # processed; take_events would ack a batch even when its processing raised or was
        # cancelled by a rebalance or shutdown, and those events would be lost.
        async for events in stream.noack_take(
            settings.stream.batch_size, within=settings.stream.batch_wait_s
        ):
            await processor.handle_batch([_record(e.message) for e in events])
            for event in events:
                await stream.ack(event)

    @app.on_partitions_assigned.connect
    async def _ready(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        # After each rebalance; botify up and the tests wait for this line. faust also
        # assigns its own leader topic, which is left out.
        mine = sorted(tp.partition for tp in assigned if tp.topic == kafka.listens_topic)
        logger.warning("botify stream worker ready: partitions %s of %s", mine, kafka.listens_topic)

    return app
