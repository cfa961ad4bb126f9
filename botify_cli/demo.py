"""The main job: an online experiment between every recommender on simulated traffic.

Builds (or reuses) the simulated world, starts the embedded stack (trainer included) with an
experiment that gives each chosen recommender an arm (Random is the control), and drives
sessions through the API in two phases at a set rate. During the warm-up the trainer learns
from nothing but the demo's own traffic (every model starts cold), a round per fixed number
of new examples; the measured phase that follows is the A/B test proper, analysed on its own
(the whole run is analysed too). Then it exports the events topic, measures freshness, plays
the oracle on the measured episodes, and writes the report and a results file. Paced traffic
and rounds by data make a learned arm's figure a matter of sessions, not of wall-clock time:
the same on a fast machine and a slow one, as long as both hold the rate.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from botify.analysis import AnalysisReport, analyze_file
from botify.analysis.freshness import Freshness, freshness, freshness_delays, read_runs
from botify.analysis.learning import (
    Histogram,
    Learning,
    arm_labels,
    live_marks,
    relabel,
    session_curves,
)
from botify.analysis.load import load_log
from botify.analysis.render import Timeline, write_html
from botify.errors import BackendUnavailableError, ConfigError
from botify.experiments import ALLOWED_GROUPS, arm_name
from botify.listen_export import ExportResult, export_parquet
from botify.models import default_models, hyper_params, trained_models
from botify.recommenders import model_readers, recommender_names
from botify.settings import Settings
from botify_cli.prometheus import PrometheusQuery, arm_timeline
from botify_cli.stack import EmbeddedStack
from botify_sim.config import SimConfig
from botify_sim.driver import DriveSummary, drive
from botify_sim.oracle import oracle_ceiling
from botify_sim.simulate import SimSummary
from botify_sim.worlds import ensure_world

EXPERIMENT = "RECOMMENDERS"
CONTROL = "random"
SCRAPE_INTERVAL_S = 2.0


def demo_arms(recommenders: Sequence[str]) -> dict[str, str]:
    """Random as control (C), then each of ``recommenders`` in order (T1, T2, ...); spare
    groups (splits come in 2, 3, 4, 5, 7 or 9) become extra Random arms, an A/A check for
    free. Unknown names, repeats and more arms than the largest split are ConfigErrors."""
    names = [n.strip() for n in recommenders if n.strip()]
    known = recommender_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"unknown recommender {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(known))}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"recommender given twice: {', '.join(repeated)}")
    names = [CONTROL] + [n for n in names if n != CONTROL]
    if len(names) > max(ALLOWED_GROUPS):
        raise ConfigError(
            f"{len(names) - 1} recommenders beside the control {CONTROL!r}: a split has at most "
            f"{max(ALLOWED_GROUPS)} groups, so at most {max(ALLOWED_GROUPS) - 1} (--arms)"
        )
    groups = next(g for g in ALLOWED_GROUPS if g >= len(names))
    names += [CONTROL] * (groups - len(names))
    return {arm_name(g): name for g, name in enumerate(names)}


def trainer_env(settings: Settings, arms: Iterable[str]) -> dict[str, str]:
    """The demo's trainer: every model some arm reads, and no other; a round after every
    ``demo.train_every_examples`` new examples and none by the clock, with budgets so
    generous that each run ends at its epochs: what it learns per session of traffic is then
    the same on a fast machine and a slow one."""
    demo, trainer = settings.demo, settings.trainer
    budget = str(demo.train_budget_s)
    served = model_readers(arms)
    # Every model an arm reads, even one BOTIFY_TRAINER__MODELS leaves out (a plugin's):
    # untrained, its arm would only ever serve the fallback.
    listed = trained_models(trainer)
    order = (*listed, *(m for m in default_models() if m not in listed))
    models = [m for m in order if m in served]
    env = {
        "BOTIFY_TRAINER__MODELS": json.dumps(models),
        "BOTIFY_TRAINER__EVERY_S": "inf",
        "BOTIFY_TRAINER__EVERY_EXAMPLES": str(demo.train_every_examples),
        "BOTIFY_TRAINER__TRAIN_BUDGET_S": budget,
        "BOTIFY_TRAINER__EXPORT_BUDGET_S": budget,
    }
    for name in models:
        hyper = hyper_params(name, trainer)
        if hyper.budget_s is not None:
            doc = hyper.model_copy(update={"budget_s": demo.train_budget_s}).model_dump()
            env[f"BOTIFY_TRAINER__{name.upper()}"] = json.dumps(doc)
    return env


def write_experiments(path: Path, arms: dict[str, str]) -> Path:
    table = ", ".join(f'{arm} = "{name}"' for arm, name in arms.items())
    path.write_text(
        '[[experiment]]\nname = "AA"\ngroups = 2\n\n'
        f'[[experiment]]\nname = "{EXPERIMENT}"\ngroups = {len(arms)}\narms = {{ {table} }}\n'
    )
    return path


@dataclass
class DemoResult:
    run_dir: Path
    arms: dict[str, str]
    warmup: DriveSummary | None
    drive: DriveSummary  # the measured phase
    export: ExportResult
    analysis: AnalysisReport  # the measured phase
    whole_run: AnalysisReport  # warm-up included
    report: Path
    freshness: list[Freshness]
    training_runs: list[dict[str, object]]
    timings: dict[str, float]
    # Each arm's mean time per session over the run, from Prometheus (empty without it).
    timeline: Timeline | None = None
    oracle: SimSummary | None = None  # the oracle on the measured episodes
    learning: Learning | None = None
    every_examples: int = 0  # the trainer's round size in examples

    def ratios(self, arm: str) -> tuple[float | None, float | None]:
        """The arm's measured mean time per session × Random (the control) and as a share
        of the oracle's."""
        by_arm = {a.arm: a.mean_time_per_session for a in self.analysis.arms}
        value, control = by_arm.get(arm), by_arm.get("C")
        if value is None or not math.isfinite(value):
            return None, None
        x_random = value / control if control else None
        of_oracle = value / self.oracle.mean_time if self.oracle and self.oracle.mean_time else None
        return x_random, of_oracle

    def to_json(self) -> dict[str, object]:
        sessions_by_arm = {a.arm: a for a in self.analysis.arms}
        return {
            "experiment": EXPERIMENT,
            "arms": [
                {
                    "arm": arm,
                    "recommender": name,
                    "sessions": sessions_by_arm[arm].sessions if arm in sessions_by_arm else 0,
                    "users": sessions_by_arm[arm].users if arm in sessions_by_arm else 0,
                    "mean_time_per_session": sessions_by_arm[arm].mean_time_per_session
                    if arm in sessions_by_arm
                    else None,
                    "mean_tracks_per_session": sessions_by_arm[arm].mean_tracks_per_session
                    if arm in sessions_by_arm
                    else None,
                    "x_random": self.ratios(arm)[0],
                    "share_of_oracle": self.ratios(arm)[1],
                }
                for arm, name in self.arms.items()
            ],
            "measured_phase_only": self.warmup is not None,
            "whole_run_arms": [
                {
                    "arm": a.arm,
                    "sessions": a.sessions,
                    "mean_time_per_session": a.mean_time_per_session,
                }
                for a in self.whole_run.arms
            ],
            "freshness": [f.to_dict() for f in self.freshness],
            "training": {
                "rounds": len(round_sizes(self.training_runs)),
                "new_examples_per_round": round_sizes(self.training_runs),
                "every_examples": self.every_examples,
                "kept_up": trainer_kept_up(round_sizes(self.training_runs), self.every_examples),
                "runs": len(self.training_runs),
                "promoted": sum(1 for r in self.training_runs if r.get("promoted")),
                "by_model": _runs_by_model(self.training_runs),
            },
            "table": self.analysis.table(),
            "extended": self.analysis.to_dict()["extended"],
            "srm": self.analysis.to_dict()["srm"],
            "warmup_sessions": self.warmup.sessions if self.warmup else 0,
            "traffic": {
                "sessions": self.drive.sessions,
                "failed_sessions": self.drive.failed_sessions,
                "requests": self.drive.requests,
                "requests_per_s": self.drive.requests_per_s,
                "sessions_per_min": self.drive.sessions_per_min,
                "target_rate": self.drive.rate,
                "achieved_rate": self.drive.achieved_rate,
                "warmup_achieved_rate": self.warmup.achieved_rate if self.warmup else None,
                "start_lag_p95_s": self.drive.start_lag_quantile(0.95),
                "behind": self.drive.behind or bool(self.warmup and self.warmup.behind),
                "events_exported": self.export.rows,
                "bad_records": self.export.bad_records,
            },
            "timings_s": self.timings,
            "timeline": {
                name: [[t, v if math.isfinite(v) else None] for t, v in series]
                for name, series in (self.timeline or {}).items()
            },
            "report": str(self.report),
            "oracle": None
            if self.oracle is None
            else {
                "mean_time_per_session": self.oracle.mean_time,
                "sem": self.oracle.sem_time,
                "mean_tracks_per_session": self.oracle.mean_tracks,
                "sessions": self.oracle.sessions,
            },
            "learning": None if self.learning is None else self.learning.to_dict(),
        }


def run_demo(
    settings: Settings,
    sim: SimConfig,
    run_dir: Path,
    episodes: int,
    processes: int,
    say: Callable[[str], None],
    on_progress: Callable[[int], None],
    warmup: int = 0,
    api_instances: int = 1,
    stream_workers: int = 1,
    prometheus: bool = False,
    arms: dict[str, str] | None = None,
    rate: float | None = None,
    on_behind: Callable[[float], None] | None = None,
) -> DemoResult:
    """``warmup`` sessions for the trainer to learn from, then ``episodes`` measured ones,
    at ``rate`` sessions/s (None: as fast as they go), on ``arms`` (default: the settings'
    ``demo.arms``); on a fleet of ``api_instances`` behind a load balancer if more than one.
    With ``prometheus``, a real Prometheus scrapes the stack and the report charts each arm's
    mean time per session over the run from it."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    say("building the simulated world (cached after the first run)")
    world_dir, world = ensure_world(settings.run_dir / "worlds", sim)
    # An API that requires keys (BOTIFY_API__API_KEYS) is driven with the first one.
    api_key = settings.api.client_key
    timings["world"] = time.perf_counter() - t
    arms = arms or demo_arms(settings.demo.arms)
    experiments = write_experiments(run_dir / "experiments.toml", arms)
    trains = bool(model_readers(arms.values()))
    env = {
        **(trainer_env(settings, arms.values()) if trains else {}),
        "BOTIFY_CATALOG__PATH": str(world_dir / "catalog.jsonl"),
        "BOTIFY_EXPERIMENTS__PATH": str(experiments),
        # Models, examples and trainer reports of this run live in its directory: every
        # demo starts cold.
        "BOTIFY_RUN_DIR": str(run_dir.resolve()),
    }
    t = time.perf_counter()
    say("starting the embedded stack")
    stack = EmbeddedStack(
        settings,
        run_dir / "logs",
        api_instances=api_instances,
        stream_workers=stream_workers,
        trainer=trains,
        extra_env=env,
        prometheus=prometheus,
        scrape_interval_s=SCRAPE_INTERVAL_S,
    )
    timeline: Timeline | None = None
    with stack:
        endpoints = stack.endpoints
        assert endpoints is not None
        timings["stack_start"] = time.perf_counter() - t
        started_at = time.time()

        def drive_phase(phase: str, sessions: int, seed: int) -> DriveSummary:
            # Both phases drive the same world, pace and key; only the count and seed differ.
            t = time.perf_counter()
            summary = drive(
                endpoints.api,
                world_dir,
                world,
                sessions,
                processes,
                seed,
                sim.user,
                on_progress,
                rate=rate,
                on_behind=on_behind,
                api_key=api_key,
            )
            timings[phase] = time.perf_counter() - t
            _check_sessions(summary)
            return summary

        warm: DriveSummary | None = None
        if warmup:
            say(f"warm-up: {warmup:,} sessions while the trainer learns")
            # Another seed: the measured phase must not replay the warm-up's sessions.
            warm = drive_phase("warmup", warmup, sim.seed + 1)
        measured_from = time.time_ns() // 1_000_000
        say(f"driving {episodes:,} measured sessions from {processes} processes")
        summary = drive_phase("traffic", episodes, sim.seed)
        if endpoints.prometheus is not None:
            say("reading each arm's time per session over the run from Prometheus")
            timeline = _timeline(endpoints.prometheus, started_at)
        t = time.perf_counter()
        # Stopping the API flushes its producer: every answered request is on the topic
        # before the export reads the high watermarks.
        say("stopping the API and exporting the events topic")
        stack.stop_service("load-balancer")
        for name in stack.api_names():
            stack.stop_service(name)
        stack.stop_service("trainer")
        kafka = endpoints.kafka_settings(settings.kafka)
        exported = export_parquet(kafka, run_dir / "events.parquet")
        timings["export"] = time.perf_counter() - t
    t = time.perf_counter()
    say("analysing")
    events = pl.read_parquet(exported.path)
    measured = run_dir / "events.measured.parquet"
    events.filter(pl.col("timestamp") >= measured_from).write_parquet(measured)
    analysis = analyze_file(measured, EXPERIMENT, "C")
    whole = analyze_file(exported.path, EXPERIMENT, "C") if warmup else analysis
    runs = read_runs(run_dir / "trainer")
    fresh = [
        freshness(events, model, recommenders, runs, since_ms=measured_from)
        for model, recommenders in single_model_readers(arms.values()).items()
    ]
    timings["analysis"] = time.perf_counter() - t
    t = time.perf_counter()
    oracle_episodes = min(episodes, settings.demo.oracle_sessions)
    say(f"the oracle's ceiling on the first {oracle_episodes:,} measured episodes")
    oracle = oracle_ceiling(world, oracle_episodes, sim.seed, sim.user)
    timings["oracle"] = time.perf_counter() - t
    learning = _learning(
        settings, exported.path, events, arms, runs, int(started_at * 1000), measured_from
    )
    learning = replace(learning, oracle=oracle.mean_time)
    report = write_html(
        analysis, run_dir / "report.html", timeline, labels=dict(arms), learning=learning
    )
    return DemoResult(
        run_dir,
        arms,
        warm,
        summary,
        exported,
        analysis,
        whole,
        report,
        fresh,
        runs,
        timings,
        timeline,
        oracle,
        learning,
        settings.demo.train_every_examples,
    )


def _learning(
    settings: Settings,
    path: Path,
    events: pl.DataFrame,
    arms: dict[str, str],
    runs: list[dict[str, object]],
    started_ms: int,
    measured_from: int,
) -> Learning:
    """Each arm over the whole run in windows of sessions, the versions going live and the
    measured phase's freshness of each model one arm alone serves."""
    frame = load_log(path, EXPERIMENT).frame
    curves = session_curves(frame, settings.demo.curve_window, started_ms)
    versions, fresh = {}, {}
    for model, readers in single_model_readers(arms.values()).items():
        served, delays, _ = freshness_delays(events, model, readers, runs, measured_from)
        versions[model] = live_marks(served.to_dicts(), started_ms)
        fresh[model] = Histogram.of(delays.to_list(), settings.demo.freshness_bin_s)
    return Learning(
        started_ms,
        (measured_from - started_ms) / 1000.0,
        settings.demo.curve_window,
        relabel(curves, arm_labels(arms)),
        versions,
        fresh,
    )


def _timeline(url: str, since: float) -> Timeline:
    """Each arm over the run, once the last sessions have been scraped."""
    time.sleep(3 * SCRAPE_INTERVAL_S)  # the stream's last commits, then one scrape
    prom = PrometheusQuery(url)
    try:
        return arm_timeline(prom, EXPERIMENT, since, time.time())
    finally:
        prom.close()


def _check_sessions(summary: DriveSummary) -> None:
    if summary.sessions == 0:
        first = next((e.error for e in summary.episodes if e.error), "no worker reported")
        raise BackendUnavailableError(f"no simulated session completed; first failure: {first}")


def single_model_readers(arms: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Model -> the arms that serve it and no other model. An event names the version that
    served it but not the model, so a cascade's versions (three models) cannot be told
    apart; models only a cascade serves are left out of the freshness table."""
    readers = model_readers(arms)
    count = Counter(r for rs in readers.values() for r in rs)
    out = {m: tuple(r for r in rs if count[r] == 1) for m, rs in readers.items()}
    return {m: rs for m, rs in out.items() if rs}


def round_sizes(runs: list[dict[str, object]]) -> list[int]:
    """The new examples that triggered each training round, in round order."""
    sizes: dict[int, int] = {}
    for r in runs:
        index, new = r.get("round"), r.get("new_examples")
        if isinstance(index, int) and isinstance(new, int):
            sizes.setdefault(index, new)
    return [sizes[i] for i in sorted(sizes)]


def trainer_kept_up(sizes: list[int], every_examples: int) -> bool:
    """Every round after the first started at most half a round's examples late: a trainer
    slower than the traffic starts each round with a growing backlog instead."""
    return all(n <= 1.5 * every_examples for n in sizes[1:])


def _runs_by_model(runs: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for r in runs:
        m = out.setdefault(str(r["model"]), {"runs": 0, "promoted": 0, "last_metrics": {}})
        m["runs"] = int(m["runs"]) + 1  # type: ignore[call-overload]
        if r.get("promoted"):
            m["promoted"] = int(m["promoted"]) + 1  # type: ignore[call-overload]
            m["last_metrics"] = r.get("metrics", {})
            m["last_version"] = r.get("version")
    return out


def write_results(result: DemoResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
