"""How to reach Redis: one reading of ``RedisSettings`` for every client botify builds.

redis-py reads URLs itself; the API's pipelined client (pipelined.py) opens its own socket,
so both take their address, TLS context and credentials from here. Otherwise a ``rediss://``
URL would make the hand-made client open plain TCP and send AUTH in clear text.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import redis
import redis.asyncio as aioredis

from botify.errors import ConfigError
from botify.settings import RedisSettings


@dataclass(frozen=True)
class RedisEndpoint:
    """One Redis server: a TCP address (``tls`` set for rediss://) or a unix socket."""

    host: str
    port: int
    socket_path: str | None
    db: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None
    # The same TLS settings in redis-py's words (it builds its own context).
    tls_kwargs: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisEndpoint:
        url = urlparse(settings.url)
        if url.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"redis url {redact(settings.url)}: use redis://, rediss:// or unix://"
            )
        # redis-py's URL forms: credentials in the netloc or as ?username=&password= (the
        # only way for unix://), the database in the path or as ?db=. Read here rather than
        # by redis.connection.parse_url, which also takes ?host=, ?port= and ?path= from the
        # query: `rediss://h/0?path=/x.sock` would become a plain unix socket, without TLS.
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path_db = "" if url.scheme == "unix" else url.path.lstrip("/")
        try:
            db = int(path_db or query.get("db") or 0)
        except ValueError:
            raise ConfigError(f"redis url {redact(settings.url)}: db must be a number") from None
        if url.scheme == "unix" and (url.netloc or not url.path.startswith("/")):
            raise ConfigError(f"redis url {redact(settings.url)}: unix:// needs an absolute path")
        password = settings.password.get_secret_value() if settings.password else None
        return cls(
            host=url.hostname or "127.0.0.1",
            port=url.port or 6379,
            socket_path=url.path if url.scheme == "unix" else None,
            db=db,
            username=settings.username
            or (unquote(url.username) if url.username else query.get("username")),
            password=password or (unquote(url.password) if url.password else query.get("password")),
            tls=_tls_context(settings) if url.scheme == "rediss" else None,
            tls_kwargs=tuple(_redis_py_tls(settings).items()),
        )

    def redis_py_kwargs(self) -> dict[str, Any]:
        """Connection arguments for redis-py's clients (sync and asyncio)."""
        kwargs: dict[str, Any] = {
            "db": self.db,
            "username": self.username,
            "password": self.password,
        }
        if self.socket_path is not None:
            return kwargs | {"unix_socket_path": self.socket_path}
        kwargs |= {"host": self.host, "port": self.port}
        if self.tls is not None:
            kwargs |= dict(self.tls_kwargs)
        return kwargs

    def describe(self) -> str:
        """The address, for messages: never the credentials."""
        if self.socket_path is not None:
            return f"unix:{self.socket_path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}"


def _tls_context(settings: RedisSettings) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
        if settings.tls_cert_file:
            context.load_cert_chain(
                str(settings.tls_cert_file),
                str(settings.tls_key_file) if settings.tls_key_file else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"redis TLS files: {exc}") from None
    if not settings.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _redis_py_tls(settings: RedisSettings) -> dict[str, Any]:
    def path(p: object) -> str | None:
        return None if p is None else str(p)

    return {
        "ssl": True,
        "ssl_ca_certs": path(settings.tls_ca_file),
        "ssl_certfile": path(settings.tls_cert_file),
        "ssl_keyfile": path(settings.tls_key_file),
        "ssl_cert_reqs": "required" if settings.tls_verify else "none",
        "ssl_check_hostname": settings.tls_verify,
    }


# The userinfo up to the last '@' before any query (a password may hold '/', unencoded),
# and a password in the query.
_USERINFO = re.compile(r"^([a-z]+://)([^?#]*)@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""

    def userinfo(m: re.Match[str]) -> str:
        user, colon, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}{colon}***@" if colon else m.group(0)

    return _QUERY_PASSWORD.sub(r"\1***", _USERINFO.sub(userinfo, url))


def async_redis(settings: RedisSettings, **options: Any) -> aioredis.Redis:
    """A redis-py asyncio client for ``settings``."""
    return aioredis.Redis(**RedisEndpoint.from_settings(settings).redis_py_kwargs(), **options)


def sync_redis(settings: RedisSettings, **options: Any) -> redis.Redis:
    """A redis-py client for ``settings``."""
    return redis.Redis(**RedisEndpoint.from_settings(settings).redis_py_kwargs(), **options)
