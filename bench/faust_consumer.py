"""A faust agent that only decodes: what faust's consumer path alone carries, for
``bench_stream.py --throughput``. Counts decoded records in Redis (``BENCH_COUNTER``).

    BOTIFY_* settings as for a stream worker; python bench/faust_consumer.py worker
"""

from __future__ import annotations

import ssl
import tempfile
from typing import Any

import faust

from botify.events import decode_listen_event
from botify.settings import KafkaSettings, Settings
from botify.storage.connection import async_redis

BENCH_COUNTER = "bench:faust:decoded"


def faust_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsArg | None:
    """The Kafka security settings in faust's terms (aiokafka underneath), so the faust
    baseline reaches a secured cluster as the worker does."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    context = None
    if kafka.security_protocol.endswith("SSL"):
        ca = str(kafka.ssl_ca_location) if kafka.ssl_ca_location else None
        context = ssl.create_default_context(cafile=ca)
        if kafka.ssl_certificate_location:
            key = kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None
            context.load_cert_chain(
                str(kafka.ssl_certificate_location),
                str(kafka.ssl_key_location) if kafka.ssl_key_location else None,
                key,
            )
    if not kafka.security_protocol.startswith("SASL"):
        return faust.SSLCredentials(context)
    assert kafka.sasl_password is not None  # KafkaSettings checks SASL has credentials
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value(),
        mechanism=kafka.sasl_mechanism,
        ssl_context=context,
    )


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
        broker_credentials=faust_credentials(kafka),
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
