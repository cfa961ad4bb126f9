"""``botify``: up, sim, analyze, demo, bench, settings."""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from botify.errors import BotifyError
from botify.settings import Settings
from botify_cli.stack import EmbeddedStack, new_run_dir

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr, no traceback."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def load_settings() -> Settings:
    try:
        return Settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise fail(f"invalid BOTIFY_* settings: {exc}") from None


class _Terminated(Exception):
    pass


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


@app.callback()
def _root() -> None:
    """botify: an event-streaming recommender platform with experiments built in."""


@app.command()
def up(
    api_port: Annotated[int | None, typer.Option(help="API port (default: a free one).")] = None,
    stream_workers: Annotated[int, typer.Option(min=1, max=16)] = 1,
) -> None:
    """Start the embedded stack (broker, Redis, API, stream workers) until Ctrl-C."""
    settings = load_settings()
    if api_port is not None and not 1 <= api_port <= 65535:
        raise fail(f"--api-port must be in 1..65535, got {api_port}")
    log_dir = new_run_dir(settings, "up")
    stack = EmbeddedStack(settings, log_dir, api_port=api_port, stream_workers=stream_workers)
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with console.status("starting the embedded stack…") as status:
            endpoints = stack.start(on_step=lambda what: status.update(f"starting {what}…"))
        table = Table(title="botify is up", show_header=False)
        table.add_row("API", endpoints.api)
        table.add_row("API docs", f"{endpoints.api}/docs")
        table.add_row("metrics", f"{endpoints.api}/metrics")
        table.add_row("broker", endpoints.broker)
        table.add_row("redis", endpoints.redis)
        table.add_row("logs", str(log_dir))
        console.print(table)
        console.print("Press Ctrl-C to stop.")
        while True:
            dead = stack.dead()
            if dead:
                raise fail(f"{', '.join(dead)} exited; see the logs in {log_dir}", code=1)
            time.sleep(0.5)
    except (KeyboardInterrupt, _Terminated):
        console.print("stopping…")
    except BotifyError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        stack.stop()
    console.print("stopped.")


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (from BOTIFY_* variables and defaults)."""
    settings = load_settings()
    console.print_json(settings.model_dump_json())


def main() -> None:  # pragma: no cover - console script entry
    app()
