"""``botify models``: the published versions of each model, and moving a pointer back.

Reads the same settings as the services: the Redis that holds the pointers
(``BOTIFY_REDIS__URL``), the models' directory (``BOTIFY_RUN_DIR`` or
``BOTIFY_MODELS__DIR``) and the broker the announcements go to
(``BOTIFY_KAFKA__BOOTSTRAP_SERVERS``); ``botify up`` prints the first and the last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from confluent_kafka import KafkaError, KafkaException
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from botify.errors import BotifyError
from botify.kafka import CLI
from botify.model_store import Announcement, ModelAnnouncer, ModelStore, announcements
from botify.model_store.pointers import PointerMove
from botify.settings import Settings
from botify.storage.connection import async_redis, redact

app = typer.Typer(no_args_is_help=True, help="Published model versions: history and rollback.")
console = Console()
err_console = Console(stderr=True)

# How long the CLI waits for Redis before saying it is unreachable.
REDIS_TIMEOUT_S = 5.0

T = TypeVar("T")


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


def _settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise _fail(f"invalid BOTIFY_* settings: {exc}") from None


def _with_store(
    settings: Settings,
    announcer: _LazyAnnouncer | None,
    work: Callable[[ModelStore], Awaitable[T]],
) -> T:
    """Run ``work`` on a store over the configured Redis and models directory (announcing
    with ``announcer``); every expected failure becomes one line on stderr."""
    if settings.redis.url.startswith("memory://"):
        raise _fail("the model pointers live in Redis: set BOTIFY_REDIS__URL to the stack's")

    async def run() -> T:
        client = async_redis(
            settings.redis,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        try:
            store = ModelStore.from_settings(settings, client, announcer)
            return await work(store)
        finally:
            await client.aclose()
            if announcer is not None:
                await asyncio.to_thread(announcer.close)

    try:
        return asyncio.run(run())
    except BotifyError as exc:
        raise _fail(_one_line(exc)) from None
    except RedisError as exc:  # redis-py wraps its socket errors in RedisError
        raise _fail(f"Redis at {redact(settings.redis.url)}: {_one_line(exc)}") from None
    except OSError as exc:  # the models' directory
        raise _fail(_os_error(exc)) from None


def _os_error(exc: OSError) -> str:
    """An ``OSError`` as its cause and the file it concerns (without the errno)."""
    if exc.filename is not None:
        return f"{exc.strerror or type(exc).__name__}: {exc.filename}"
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class _LazyAnnouncer:
    """A ``ModelAnnouncer`` built at the first announcement: a refused rollback never
    connects to the broker. Never raises: the pointer has moved by then, and ``failure``
    says why the announcement was not sent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._announcer: ModelAnnouncer | None = None
        self.failure: str | None = None

    def announce(self, announcement: Announcement) -> bool:
        # The announcer logs why it failed: taken here, to be said once, as a warning.
        log = logging.getLogger(announcements.__name__)
        capture, propagate = _Capture(), log.propagate
        log.addHandler(capture)
        log.propagate = False
        try:
            if self._announcer is None:
                topic = self._settings.models.announce_topic
                self._announcer = ModelAnnouncer(self._settings.kafka, topic, CLI)
            sent = self._announcer.announce(announcement)
        except (BotifyError, KafkaException) as exc:
            self.failure = _kafka_error(exc)
            return False
        finally:
            log.removeHandler(capture)
            log.propagate = propagate
        if not sent:
            self.failure = capture.last or (
                f"the broker at {self._settings.kafka.bootstrap_servers} did not acknowledge it"
            )
        return sent

    def close(self) -> None:
        if self._announcer is not None:
            try:
                self._announcer.close()
            except (BotifyError, KafkaException) as exc:
                self.failure = self.failure or _kafka_error(exc)


def _kafka_error(exc: Exception) -> str:
    """librdkafka's own message, without the KafkaError{code=...} wrapping."""
    first = exc.args[0] if exc.args else None
    return " ".join(first.str().split()) if isinstance(first, KafkaError) else _one_line(exc)


class _Capture(logging.Handler):
    """Keeps the last message logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = " ".join(record.getMessage().split())


def _when(at_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(at_ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="The model, e.g. contextual.")],
    version: Annotated[
        int | None,
        typer.Argument(
            min=1,
            help=(
                "A version still on disk (default: the one served before the current,"
                " by the history; never one rolled back from)."
            ),
        ),
    ] = None,
) -> None:
    """Point NAME back at VERSION; every API instance follows and the history records it.

    API instances serve it within models.poll_s, at once when the announcement reaches
    them. The trainer then takes it as the version to beat: only a newly trained version
    that passes the promotion rule against it replaces it.
    """
    settings = _settings()
    announcer = _LazyAnnouncer(settings)
    move = _with_store(settings, announcer, lambda store: store.rollback(name, version))
    console.print(
        f"{name}: rolled back from v{move.previous} to v{move.version}; API instances follow "
        f"within {settings.models.poll_s:g} s",
        highlight=False,
    )
    if announcer.failure is not None:
        # The pointer is the source of truth: the rollback is done, only the shortcut is not.
        err_console.print(
            f"[bold yellow]warning:[/] pointer moved; announcement not sent: {announcer.failure}"
            f"; API instances will follow on their next poll (within "
            f"{settings.models.poll_s:g} s)",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def history(name: Annotated[str, typer.Argument(help="The model, e.g. contextual.")]) -> None:
    """Every move of NAME's pointer, promotions and rollbacks, oldest first."""

    async def read(store: ModelStore) -> tuple[list[PointerMove], int | None, list[int]]:
        moves = await store.promotions(name)
        current = await store.current(name)
        return moves, current, store.versions(name)

    moves, current, on_disk = _with_store(_settings(), None, read)
    if current is None:
        raise _fail(f"model {name!r} has no published version")
    table = Table(title=f"{name}: pointer moves (current v{current})")
    for column in ("when", "action", "from", "to", "on disk"):
        table.add_column(column)
    for move in moves:
        table.add_row(
            _when(move.at_ms),
            move.action,
            "-" if move.previous is None else f"v{move.previous}",
            f"v{move.version}",
            "yes" if move.version in on_disk else "pruned",
        )
    console.print(table)
