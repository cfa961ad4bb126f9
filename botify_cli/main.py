"""``botify``: up, sim, analyze, demo, bench, export, models, settings."""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from botify.errors import BotifyError, ConfigError
from botify.settings import RecommenderSettings, Settings
from botify.storage.connection import redact
from botify_cli import models
from botify_cli.analyze import analyze_command

# The heavy modules (scipy and polars through the analysis, pyarrow through the export, the
# model registry and its recommenders, the simulator, the process stack) are imported by the
# commands that use them, so
# that `botify --help` and the small commands (models, settings) start in a fraction of a
# second; tests/unit/test_cli_startup.py keeps them out of this module's imports.
if TYPE_CHECKING:
    from botify_cli.stack import EmbeddedStack, StackEndpoints
    from botify_sim.config import SimConfig
    from botify_sim.driver import DriveSummary

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.add_typer(models.app, name="models")
console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """One line on stderr, no traceback."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def load_settings() -> Settings:
    """The settings, with the model plugins they name registered; a typo'd key (a trainer
    or serving setting no model or recipe claims) is refused here, before anything starts."""
    from botify.models import check_sections, check_serving, load_plugins

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError names the bad variable
        raise fail(f"invalid BOTIFY_* settings: {exc}") from None
    try:
        load_plugins(settings.models.plugins)
        check_sections(settings.trainer)
        check_serving(settings.recommender)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return settings


class _Terminated(BaseException):
    pass


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(signal.Signals(signum).name)


@app.callback()
def _root() -> None:
    """botify: an event-streaming recommender platform with experiments built in."""


@app.command()
def up(
    api_port: Annotated[
        int | None, typer.Option(help="Public API port (default: a free one).")
    ] = None,
    api_instances: Annotated[
        int,
        typer.Option(min=1, max=16, help="API processes; more than one run behind HAProxy."),
    ] = 1,
    stream_workers: Annotated[
        int, typer.Option(min=1, max=16, help="Stream workers, in one consumer group.")
    ] = 1,
    trainer: Annotated[
        bool, typer.Option(help="Run the trainer: models learnt from the stream, hot-reloaded.")
    ] = True,
    prometheus: Annotated[
        bool,
        typer.Option(help="Also run Prometheus (from PATH) scraping every process, with alerts."),
    ] = False,
) -> None:
    """Start the embedded stack (broker, Redis, API instances behind a load balancer, stream
    workers, trainer) until Ctrl-C."""
    from botify_cli.stack import EmbeddedStack, new_run_dir
    from botify_cli.supervision import BackendDiedError, BrokerMemoryError, Supervisor

    settings = load_settings()
    if api_port is not None and not 1 <= api_port <= 65535:
        raise fail(f"--api-port must be in 1..65535, got {api_port}")
    log_dir = new_run_dir(settings, "up")
    stack = EmbeddedStack(
        settings,
        log_dir,
        api_port=api_port,
        api_instances=api_instances,
        stream_workers=stream_workers,
        trainer=trainer,
        # Models and examples of this run live in its directory, next to its logs.
        extra_env={"BOTIFY_RUN_DIR": str(log_dir.resolve())},
        prometheus=prometheus,
    )
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with console.status("starting the embedded stack…") as status:
            endpoints = stack.start(on_step=lambda what: status.update(f"starting {what}…"))
        table = stack_table(stack, endpoints)
        if trainer:
            table.add_row("models", str(settings.models.path(log_dir)))
        console.print(table)
        console.print("Press Ctrl-C to stop.")
        supervisor = Supervisor(stack, settings.embedded, say=_say_supervised)
        while True:
            supervisor.check()
            time.sleep(0.5)
    except (KeyboardInterrupt, _Terminated):
        console.print("stopping…")
    except (BackendDiedError, BrokerMemoryError) as exc:
        # The other processes would only fail against the dead backend: no clean flush.
        stack.stop(grace_s=settings.embedded.stop_grace_s)
        raise fail(str(exc), code=1) from None
    except BotifyError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        stack.stop()
    console.print("stopped.")


def _say_supervised(message: str) -> None:
    console.print(f"[{time.strftime('%H:%M:%S')}] {message}", markup=False, highlight=False)


def stack_table(stack: EmbeddedStack, endpoints: StackEndpoints) -> Table:
    """Every address of a running stack, one row each."""
    table = Table(title="botify is up", show_header=False)
    balanced = endpoints.load_balancer_stats is not None
    table.add_row("API" + (" (load balancer)" if balanced else ""), endpoints.api)
    table.add_row("API docs", f"{endpoints.api}/docs")
    if balanced:
        for name, url in zip(stack.api_names(), endpoints.instances, strict=True):
            table.add_row(f"  {name}", url)
        table.add_row("load balancer stats", f"{endpoints.load_balancer_stats}")
    for target in endpoints.metrics:
        table.add_row(f"metrics ({target.service})", target.url)
    if endpoints.prometheus:
        table.add_row("prometheus", endpoints.prometheus)
        table.add_row("alerts", f"{endpoints.prometheus}/alerts")
    table.add_row("scrape targets", str(endpoints.logs / "prometheus" / "targets.json"))
    table.add_row("broker", endpoints.broker)
    table.add_row("redis", endpoints.redis)
    table.add_row(
        "stream workers",
        f"{stack.stream_workers} in consumer group {stack.settings.stream.app_id}",
    )
    table.add_row("trainer", "running" if stack.trainer else "off")
    table.add_row("logs", str(endpoints.logs))
    return table


app.command("analyze")(analyze_command)


def _sim_config(seed: int | None, config: Path | None) -> SimConfig:
    from botify_sim.config import load_config as load_sim_config

    try:
        sim = load_sim_config(config) if config else load_sim_config()
    except (OSError, ValueError) as exc:
        raise fail(f"cannot load simulator config: {exc}") from None
    return sim if seed is None else sim.model_copy(update={"seed": seed})


@app.command()
def world(
    out: Annotated[
        Path | None, typer.Option(help="Directory for the world (default: the cache).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="World seed (default: the config's).")] = None,
    catalog: Annotated[
        Path | None, typer.Option(help="Build on this botify catalog (JSON lines).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Simulator config TOML.")] = None,
) -> None:
    """Build a simulated world: public catalog.jsonl plus hidden embeddings and users."""
    from botify_sim.worlds import ensure_world

    settings = load_settings()
    sim = _sim_config(seed, config)
    if catalog is not None and not catalog.is_file():
        raise fail(f"no such catalog: {catalog}")
    with console.status("building the world…"):
        try:
            directory, built = ensure_world(out or settings.run_dir / "worlds", sim, catalog)
        except BotifyError as exc:
            raise fail(str(exc)) from None
    console.print(
        f"world: {len(built.catalog):,} tracks, {len(built.catalog.artist_tracks):,} artists, "
        f"{built.users:,} users in {directory}; the platform loads {directory / 'catalog.jsonl'}"
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


def _rate(rate: float | None, settings: Settings) -> float | None:
    """The pace in sessions/s (None: as fast as possible), from --rate or BOTIFY_TRAFFIC__RATE."""
    value = settings.traffic.rate if rate is None else rate
    if not (math.isfinite(value) and value >= 0):
        raise fail(f"--rate must be a number of sessions/s >= 0 (0: unpaced), got {value}")
    return value or None


def _warn_behind(lag: float, console: Console = err_console) -> None:
    console.print(
        f"[yellow]warning:[/] traffic is {lag:.1f} s behind its schedule: this machine does "
        "not hold the rate (try a lower --rate)"
    )


RATE_HELP = "Sessions started per second (0: as fast as possible; default BOTIFY_TRAFFIC__RATE)."


@app.command()
def sim(
    api: Annotated[str, typer.Option(help="Base URL of a botify-protocol API.")],
    episodes: Annotated[int, typer.Option(min=1, help="Sessions to simulate.")] = 1000,
    rate: Annotated[float | None, typer.Option(help=RATE_HELP)] = None,
    processes: Annotated[int, typer.Option(min=1, max=64)] = 2,
    seed: Annotated[int | None, typer.Option(help="Seed of the world and the sessions.")] = None,
    world_dir: Annotated[
        Path | None, typer.Option("--world", help="A world built by `botify world`.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Simulator config TOML.")] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="BOTIFY_SIM_API_KEY",
            help="Sent as a bearer token, to an API that requires keys (BOTIFY_API__API_KEYS).",
        ),
    ] = None,
) -> None:
    """Drive simulated users against an API (ours or the original botify)."""
    from botify_sim.driver import drive
    from botify_sim.world import load_world
    from botify_sim.worlds import ensure_world

    settings = load_settings()
    simc = _sim_config(seed, config)
    pace = _rate(rate, settings)
    if not api.startswith(("http://", "https://")):
        raise fail(f"--api must be an http(s) URL, got {api!r}")
    with console.status("loading the world…"):
        if world_dir is not None:
            if not (world_dir / "manifest.json").exists():
                raise fail(f"{world_dir} is not a world directory (no manifest.json)")
            directory, w = world_dir, load_world(world_dir)
        else:
            directory, w = ensure_world(settings.run_dir / "worlds", simc)
    with _progress() as progress:
        task = progress.add_task("sessions", total=episodes, rate="")
        summary = drive(
            api,
            directory,
            w,
            episodes,
            processes,
            simc.seed,
            simc.user,
            lambda n: progress.advance(task, n),
            rate=pace,
            on_behind=_warn_behind,
            api_key=api_key,
        )
    _print_drive(summary)
    if summary.sessions == 0:
        raise fail("no session completed; is the API up?", code=1)


def _print_drive(summary: DriveSummary, title: str = "traffic") -> None:
    table = Table(title=title, show_header=False)
    table.add_row("sessions", f"{summary.sessions:,} ({summary.failed_sessions} failed)")
    table.add_row("mean time per session", f"{summary.mean_time_per_session:.3f}")
    table.add_row("mean tracks per session", f"{summary.mean_tracks_per_session:.2f}")
    table.add_row("requests", f"{summary.requests:,} ({summary.requests_per_s:,.0f}/s)")
    table.add_row("sessions per minute", f"{summary.sessions_per_min:,.0f}")
    target = "unpaced" if summary.rate is None else f"target {summary.rate:g}"
    table.add_row("sessions per second", f"{summary.achieved_rate:.1f} ({target})")
    if summary.rate is not None:
        table.add_row(
            "start lag p50 / p95 / max",
            " / ".join(f"{summary.start_lag_quantile(q):.2f} s" for q in (0.5, 0.95, 1.0)),
        )
    console.print(table)
    if summary.behind:
        err_console.print(
            f"[yellow]warning:[/] achieved {summary.achieved_rate:.1f} sessions/s against a "
            f"target of {summary.rate:g}: this machine did not hold the rate, so the figures "
            "are not comparable with runs that did (try a lower --rate)"
        )
    failed = [e for e in summary.episodes if e.error]
    if failed:
        console.print(f"[yellow]first failure:[/] {failed[0].error}")


@app.command()
def demo(
    episodes: Annotated[int, typer.Option(min=10, help="Measured sessions.")] = 10_000,
    warmup: Annotated[
        int, typer.Option(min=0, help="Sessions before the measured ones, for the models to learn.")
    ] = 8_000,
    rate: Annotated[float | None, typer.Option(help=RATE_HELP)] = None,
    arms: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated recommenders, one arm each beside Random, the control "
            "(default BOTIFY_DEMO__ARMS; at most 8)."
        ),
    ] = None,
    processes: Annotated[int, typer.Option(min=1, max=64)] = 2,
    seed: Annotated[int | None, typer.Option(help="Seed of the world and the sessions.")] = None,
    api_instances: Annotated[
        int, typer.Option(min=1, max=16, help="Run on a fleet: API processes behind HAProxy.")
    ] = 1,
    stream_workers: Annotated[
        int, typer.Option(min=1, max=16, help="Stream workers, in one consumer group.")
    ] = 1,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results here.")
    ] = None,
    prometheus: Annotated[
        bool,
        typer.Option(help="Run Prometheus (from PATH) too; the report charts each arm over time."),
    ] = False,
) -> None:
    """The main job: an A/B test of every recommender on simulated traffic, end to end."""
    from botify_cli.analysis_tables import course_table, extras_table, srm_text
    from botify_cli.demo import demo_arms, round_sizes, run_demo, trainer_kept_up, write_results
    from botify_cli.stack import new_run_dir

    settings = load_settings()
    simc = _sim_config(seed, None)
    pace = _rate(rate, settings)
    try:
        chosen = demo_arms(arms.split(",") if arms is not None else settings.demo.arms)
    except ConfigError as exc:
        raise fail(f"--arms: {exc}") from None
    run_dir = new_run_dir(settings, "demo")
    signal.signal(signal.SIGTERM, _raise_terminated)
    started = time.perf_counter()
    try:
        with _progress() as progress:
            step = progress.add_task("starting", total=None, rate="")
            task = progress.add_task("sessions", total=warmup + episodes, rate="", visible=False)

            def say(what: str) -> None:
                progress.update(step, description=what)
                if what.startswith(("warm-up", "driving")):
                    progress.update(task, visible=True)

            result = run_demo(
                settings,
                simc,
                run_dir,
                episodes,
                processes,
                say,
                lambda n: progress.advance(task, n),
                warmup=warmup,
                api_instances=api_instances,
                stream_workers=stream_workers,
                prometheus=prometheus,
                arms=chosen,
                rate=pace,
                on_behind=lambda lag: _warn_behind(lag, progress.console),
            )
            progress.update(step, description="done", total=1, completed=1)
    except (KeyboardInterrupt, _Terminated):
        raise fail("interrupted; every process was stopped", code=130) from None
    except BotifyError as exc:
        raise fail(f"{exc} (logs in {run_dir / 'logs'})", code=1) from None
    if result.warmup is not None:
        _print_drive(result.warmup, "warm-up traffic (not in the A/B table)")
    _print_drive(result.drive, "measured traffic")
    phase = "measured phase" if result.warmup is not None else "whole run"
    arms_table = Table(title=f"arms of experiment RECOMMENDERS ({phase})")
    for col in (
        "arm",
        "recommender",
        "users",
        "sessions",
        "mean time / session",
        "× Random",
        "% of oracle",
        "mean tracks / session",
        "whole run",
    ):
        arms_table.add_column(col)
    by_arm = {a.arm: a for a in result.analysis.arms}
    whole = {a.arm: a for a in result.whole_run.arms}
    for arm, name in result.arms.items():
        a, w = by_arm.get(arm), whole.get(arm)
        x_random, of_oracle = result.ratios(arm)
        ratio = "-" if x_random is None else f"{x_random:.2f}"
        share = "-" if of_oracle is None else f"{of_oracle:.1%}"
        arms_table.add_row(
            arm,
            name,
            *(
                [
                    str(a.users),
                    str(a.sessions),
                    f"{a.mean_time_per_session:.3f}",
                    ratio,
                    share,
                    f"{a.mean_tracks_per_session:.2f}",
                ]
                if a
                else ["0", "0", "-", "-", "-", "-"]
            ),
            f"{w.mean_time_per_session:.3f}" if w else "-",
        )
    if result.oracle is not None:
        o = result.oracle
        arms_table.add_row(
            "-",
            "oracle (knows the hidden taste)",
            "-",
            str(o.sessions),
            f"{o.mean_time:.3f} ± {o.sem_time:.3f}",
            "-",
            "100.0%",
            f"{o.mean_tracks:.2f}",
            "-",
        )
    console.print(arms_table)
    fresh = Table(title="freshness: listen → served by a model trained on it (measured phase)")
    for col in ("model", "versions served", "listens learned", "p50 s", "p95 s", "max s"):
        fresh.add_column(col)
    for f in result.freshness:
        fresh.add_row(
            f.model,
            str(f.versions),
            f"{f.listens:,}",
            *("-" if v is None else f"{v:.1f}" for v in (f.p50_s, f.p95_s, f.max_s)),
        )
    console.print(fresh)
    sizes = round_sizes(result.training_runs)
    if sizes:
        console.print(
            f"trainer: {len(sizes)} rounds, one per {result.every_examples:,} new examples; "
            f"examples that started each round: median {sorted(sizes)[len(sizes) // 2]:,}, "
            f"max {max(sizes):,}"
        )
        if not trainer_kept_up(sizes, result.every_examples):
            err_console.print(
                "[yellow]warning:[/] the trainer fell behind the traffic (a round started "
                "with over 1.5 rounds of examples): learned arms saw fewer rounds per session "
                "than the settings promise (try a lower --rate)"
            )
    # Tables name each arm as "<arm> <recommender>" (_named): the arm already tells apart
    # the arms that share a recommender.
    console.print(course_table(result.analysis, result.arms))
    console.print(extras_table(result.analysis, result.arms))
    console.print(srm_text(result.analysis))
    results = write_results(result, json_path or run_dir / "results.json")
    console.print(
        f"report: {result.report}\nresults: {results}\nevents: {result.export.path} "
        f"({result.export.rows:,} events, {result.export.bad_records} unreadable)"
    )
    console.print(f"finished in {time.perf_counter() - started:.0f} s")


@app.command("export")
def export(
    out: Annotated[
        Path, typer.Argument(help="Output file: .parquet, or .jsonl for the botify log format.")
    ],
) -> None:
    """Export the listen-events topic of the configured broker."""
    from botify.listen_export import export_jsonl, export_parquet

    settings = load_settings()
    try:
        with console.status("reading the topic…"):
            done = (export_jsonl if out.suffix == ".jsonl" else export_parquet)(settings.kafka, out)
    except BotifyError as exc:
        raise fail(str(exc)) from None
    console.print(f"{done.rows:,} events → {done.path} ({done.bad_records} unreadable records)")


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (from BOTIFY_* variables and defaults)."""
    from botify.models import MODELS, RECIPES, hyper_params, trained_models
    from botify.recommenders.model_recommender import ServingParams

    settings = load_settings()
    shown = settings.model_dump(mode="json")  # secrets print as "**********"
    shown["redis"]["url"] = redact(settings.redis.url)
    try:
        # Each model's and recipe's own section, resolved over its defaults.
        shown["trainer"]["models"] = list(trained_models(settings.trainer))
        for name in MODELS:
            shown["trainer"][name] = hyper_params(name, settings.trainer).model_dump(mode="json")
        serving = ServingParams.parse(settings.recommender.model_dump())
        for name, recipe in RECIPES.items():
            if recipe.params is not None:
                section = serving.section(recipe.params, name, recipe.legacy_prefix)
                shown["recommender"][name] = section.model_dump(mode="json")
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for key in set(shown["recommender"]) - set(RECIPES) - set(RecommenderSettings.model_fields):
        del shown["recommender"][key]  # a flat name of before, shown in its recipe's section
    console.print_json(data=shown)


def main() -> None:  # pragma: no cover - console script entry
    app()
