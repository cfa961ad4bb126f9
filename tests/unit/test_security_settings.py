"""Security settings: what every Kafka client is given, and secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from botify.errors import ConfigError
from botify.settings import KafkaSettings, RedisSettings
from botify.storage.connection import RedisEndpoint, redact

pytestmark = pytest.mark.unit


def test_plaintext_kafka_clients_get_only_the_brokers() -> None:
    assert KafkaSettings(bootstrap_servers="k:9092").client_config() == {
        "bootstrap.servers": "k:9092"
    }


def test_sasl_ssl_passes_credentials_and_certificates_in_librdkafkas_names() -> None:
    settings = KafkaSettings(
        bootstrap_servers="k:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="botify",
        sasl_password=SecretStr("pw"),
        ssl_ca_location=Path("/etc/ca.pem"),
    )
    assert settings.client_config() == {
        "bootstrap.servers": "k:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "botify",
        "sasl.password": "pw",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert "pw" not in repr(settings)


def test_sasl_without_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="botify")


def test_the_redis_password_setting_wins_and_urls_are_shown_without_passwords() -> None:
    endpoint = RedisEndpoint.from_settings(
        RedisSettings(url="redis://u:in-url@h:7000/4", password=SecretStr("setting"))
    )
    assert (endpoint.host, endpoint.port, endpoint.db) == ("h", 7000, 4)
    assert (endpoint.username, endpoint.password) == ("u", "setting")
    assert endpoint.tls is None
    assert "setting" not in endpoint.describe() and "in-url" not in endpoint.describe()
    assert redact("redis://u:in-url@h:7000/4") == "redis://u:***@h:7000/4"
    assert redact("redis://h:7000/4") == "redis://h:7000/4"


def test_rediss_urls_get_tls_and_unix_urls_a_socket() -> None:
    tls = RedisEndpoint.from_settings(RedisSettings(url="rediss://h:6380/0"))
    assert tls.tls is not None and tls.redis_py_kwargs()["ssl"] is True
    sock = RedisEndpoint.from_settings(RedisSettings(url="unix:///run/redis.sock?db=3"))
    assert (sock.socket_path, sock.db) == ("/run/redis.sock", 3)
    assert sock.redis_py_kwargs()["unix_socket_path"] == "/run/redis.sock"


def test_the_faust_baseline_gets_the_same_kafka_security() -> None:
    from bench import faust_consumer  # faust is a dev dependency: imported only here

    assert faust_consumer.faust_credentials(KafkaSettings()) is None
    sasl = faust_consumer.faust_credentials(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="u",
            sasl_password=SecretStr("p"),
        )
    )
    assert (sasl.username, sasl.password) == ("u", "p")
    assert str(sasl.mechanism.value) == "SCRAM-SHA-256"
    assert sasl.ssl_context is not None


def test_credentials_and_db_in_the_query_are_read_and_never_shown() -> None:
    sock = RedisEndpoint.from_settings(
        RedisSettings(url="unix:///run/redis.sock?db=2&password=pw1&username=bob")
    )
    assert (sock.db, sock.username, sock.password) == (2, "bob", "pw1")
    tcp = RedisEndpoint.from_settings(RedisSettings(url="redis://h?password=pw5&db=3"))
    assert (tcp.password, tcp.db) == ("pw5", 3)
    assert (
        redact("unix:///run/redis.sock?db=2&password=pw1")
        == "unix:///run/redis.sock?db=2&password=***"
    )
    # An unencoded '/' in the password: urlparse misreads it, the redaction does not.
    assert redact("redis://:ab/cd@h:6379/0") == "redis://:***@h:6379/0"
    with pytest.raises(ConfigError, match="db must be a number") as caught:
        RedisEndpoint.from_settings(RedisSettings(url="redis://:ab/cd@h:6379/0"))
    assert "ab/cd" not in str(caught.value)
    with pytest.raises(ConfigError, match="absolute path"):
        RedisEndpoint.from_settings(RedisSettings(url="unix://run/redis.sock"))


def test_the_embedded_stack_does_not_pass_a_real_clusters_security_to_its_children(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botify_cli.stack import StackEndpoints, embedded_environ

    monkeypatch.setenv("BOTIFY_REDIS__PASSWORD", "cluster-pw")
    monkeypatch.setenv("BOTIFY_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BOTIFY_KAFKA__SASL_PASSWORD", "k")
    monkeypatch.setenv("BOTIFY_API__API_KEYS", '["kept"]')
    env = embedded_environ()
    assert not {"BOTIFY_REDIS__PASSWORD", "BOTIFY_KAFKA__SASL_PASSWORD"} & set(env)
    assert "BOTIFY_KAFKA__SECURITY_PROTOCOL" not in env
    assert env["BOTIFY_API__API_KEYS"] == '["kept"]'  # the API's own keys still apply
    secured = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="u", sasl_password=SecretStr("p")
    )
    endpoints = StackEndpoints(broker="127.0.0.1:1", redis="redis://x", api="", logs=Path())
    plain = endpoints.kafka_settings(secured)
    assert plain.client_config() == {"bootstrap.servers": "127.0.0.1:1"}


def test_the_query_cannot_move_the_address_or_drop_tls() -> None:
    """redis-py's parse_url would take these from the query; botify reads the address only
    from the URL's authority, so a rediss:// URL stays TLS to the host it names."""
    endpoint = RedisEndpoint.from_settings(
        RedisSettings(url="rediss://h:6380/1?path=/tmp/x.sock&host=evil&port=1")
    )
    assert (endpoint.host, endpoint.port, endpoint.socket_path) == ("h", 6380, None)
    assert endpoint.tls is not None and dict(endpoint.redis_py_kwargs())["ssl"] is True
