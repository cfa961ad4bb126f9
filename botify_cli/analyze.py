"""``botify analyze LOG --experiment NAME``: load, analyse, render. Register it with
``app.command("analyze")(analyze_command)``. Bad input exits with code 2 and one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from botify.errors import BotifyError


def analyze_command(
    log: Annotated[Path, typer.Argument(help="Parquet export or botify JSON-lines log.")],
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="Experiment name.")],
    control: Annotated[str, typer.Option(help="The control arm.")] = "C",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the course table as JSON.")
    ] = False,
    details: Annotated[
        bool, typer.Option(help="With --json: the full report (SRM, Holm, delta, CUPED).")
    ] = False,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report here.")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Only this metric (repeatable).")] = None,
    cuped: Annotated[bool, typer.Option(help="Add CUPED (covariate: before the split).")] = False,
    cuped_split: Annotated[
        int | None, typer.Option(help="CUPED split, ms since epoch (default: mid-log).")
    ] = None,
) -> None:
    """A/B analysis of a listen log, as the course did it, plus SRM, Holm, delta and CUPED."""
    # Imported here: the analysis brings scipy, polars and numpy, which `botify --help` and
    # the other commands do not need.
    from botify.analysis.load import load_log
    from botify.analysis.render import write_html
    from botify.analysis.report import analyze
    from botify.analysis.sessions import METRICS
    from botify_cli.analysis_tables import (
        arms_table,
        course_table,
        cuped_table,
        extras_table,
        srm_text,
    )

    console = Console()
    err = Console(stderr=True)
    try:
        arm_log = load_log(log, experiment)
        report = analyze(
            arm_log,
            control=control,
            metrics=metric or METRICS,
            cuped=cuped or cuped_split is not None,
            cuped_split=cuped_split,
        )
        if html is not None:
            write_html(report, html)
    except (BotifyError, OSError) as exc:
        err.print(f"[bold red]error:[/] {_one_line(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None

    if json_out:
        data = report.to_dict() if details else report.to_json()
        console.out(json.dumps(data, indent=2), highlight=False)
        return
    console.print(arms_table(report))
    console.print(course_table(report))
    console.print(srm_text(report))
    console.print(extras_table(report))
    table = cuped_table(report)
    if table is not None:
        console.print(table)
    if arm_log.excluded_rows:
        console.print(f"{arm_log.excluded_rows} rows without an arm for {experiment} left out.")
    if arm_log.bad_rows:
        console.print(
            f"{arm_log.bad_rows} bad rows skipped (unreadable, incomplete or out of the event "
            "schema's bounds)."
        )
    if html is not None:
        console.print(f"HTML report: {html}")


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, BotifyError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())
