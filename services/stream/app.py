"""``create_app(settings)``: the faust application of the stream workers.

faust only consumes and commits offsets here: state lives in Redis, not in faust tables, so
the API reads exactly what the workers write. Offsets are committed after the agent has
processed a record, hence at-least-once, made harmless by replay-safe state updates.
"""

from __future__ import annotations

import logging
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


def create_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    app = LowLatencyApp(
        settings.stream.app_id,
        broker=broker_urls(kafka.bootstrap_servers),
        store="memory://",
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
    processor = ListenProcessor(
        store=open_user_state_store(settings.redis.url),
        dead_letters=dead_letters,
        config=StateConfig(settings.state.history_size, settings.state.fail_threshold),
    )

    @app.agent(listens, name="listens")
    async def fold_listens(stream: Any) -> None:
        # Batches amortise Redis round trips; `within` bounds the delay a batch adds.
        async for events in stream.take_events(
            settings.stream.batch_size, within=settings.stream.batch_wait_s
        ):
            await processor.handle_batch(
                [
                    Record(m.topic, m.partition, m.offset, m.key, m.value)
                    for m in (e.message for e in events)
                ]
            )

    @app.on_partitions_assigned.connect
    async def _ready(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        # botify up and the tests wait for this line.
        logger.warning("botify stream worker ready: %d partitions assigned", len(assigned))

    return app
