"""``botify analyze``: the course table for one experiment of a log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from botify.analysis.render import rich_table, write_html
from botify.analysis.stats import analyze
from botify.errors import BotifyError


def analyze_command(
    log: Annotated[
        Path, typer.Argument(help="Our Parquet/JSON-lines export or an original botify log.")
    ],
    experiment: Annotated[str, typer.Option(help="Experiment name, e.g. RECOMMENDERS.")],
    control: Annotated[str, typer.Option(help="The control arm.")] = "C",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the course table as JSON.")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Write an HTML report here.")] = None,
    cuped: Annotated[
        bool, typer.Option(help="Add CUPED-adjusted intervals (first half as pre-period).")
    ] = False,
) -> None:
    """Rebuild sessions and per-user metrics, then compare each arm with the control."""
    console = Console()
    try:
        result = analyze(str(log), experiment, control, cuped)
    except BotifyError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if html is not None:
        write_html(result, html)
    if json_out:
        typer.echo(json.dumps(result.table(), indent=2))
        return
    console.print(rich_table(result))
    srm = result.srm
    console.print(
        f"users per arm: {srm.users}; sample-ratio check p = {srm.p_value:.3g}"
        + (" [bold red](mismatch)[/]" if srm.mismatch else "")
    )
    if html is not None:
        console.print(f"report: {html}")
