"""A faust agent that only decodes: what faust's consumer path alone carries, for
``bench_stream.py --throughput``. Counts decoded records in Redis (``BENCH_COUNTER``).

    BOTIFY_* settings as for a stream worker; python bench/faust_consumer.py worker
"""

from __future__ import annotations

import tempfile
from typing import Any

import faust

from botify.events import decode_listen_event
from botify.settings import Settings
from botify.storage.connection import async_redis

BENCH_COUNTER = "bench:faust:decoded"


def create_app(settings: Settings) -> faust.App:
    kafka = settings.kafka
    app = faust.App(
        settings.stream.app_id,
        broker=[f"kafka://{kafka.bootstrap_servers}"],
        store="memory://",
        datadir=tempfile.mkdtemp(),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=kafka.session_timeout_ms / 1000,
    )
    listens = app.topic(kafka.listens_topic, key_serializer="raw", value_serializer="raw")
    r = async_redis(settings.redis)

    @app.agent(listens, name="decode")
    async def decode(stream: Any) -> None:
        async for events in stream.noack_take(settings.stream.batch_size, within=0.005):
            for event in events:
                decode_listen_event(event.message.value)
            await r.incrby(BENCH_COUNTER, len(events))
            for event in events:
                await stream.ack(event)

    return app


if __name__ == "__main__":
    create_app(Settings()).main()
