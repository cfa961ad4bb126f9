"""``botify``: up, sim, analyze, demo, bench, settings."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def _root() -> None:
    """botify: an event-streaming recommender platform with experiments built in."""
