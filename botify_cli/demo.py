"""The main job: an online experiment between every recommender on simulated traffic.

Builds (or reuses) the simulated world, starts the embedded stack with an experiment that
gives each recommender an arm (Random is the control), drives sessions through the API,
exports the events topic, analyses it, and writes the report and a results file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botify.analysis import AnalysisReport, analyze_file
from botify.analysis.render import write_html
from botify.errors import BackendUnavailableError
from botify.experiments import ALLOWED_GROUPS, arm_name
from botify.export import ExportResult, export_parquet
from botify.recommenders import REGISTRY
from botify.settings import KafkaSettings, Settings
from botify_cli.stack import EmbeddedStack
from botify_sim.config import SimConfig
from botify_sim.driver import DriveSummary, drive
from botify_sim.worlds import ensure_world

EXPERIMENT = "RECOMMENDERS"
CONTROL = "random"


def demo_arms() -> dict[str, str]:
    """Random as control, then every other registered recommender; spare groups (splits come
    in 2, 3, 4, 5, 7 or 9) become extra Random arms, an A/A check for free."""
    names = [CONTROL] + sorted(n for n in REGISTRY if n != CONTROL)
    groups = next(g for g in ALLOWED_GROUPS if g >= len(names))
    names += [CONTROL] * (groups - len(names))
    return {arm_name(g): name for g, name in enumerate(names)}


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
    drive: DriveSummary
    export: ExportResult
    analysis: AnalysisReport
    report: Path
    timings: dict[str, float]

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
                }
                for arm, name in self.arms.items()
            ],
            "table": self.analysis.table(),
            "extended": self.analysis.to_dict()["extended"],
            "srm": self.analysis.to_dict()["srm"],
            "traffic": {
                "sessions": self.drive.sessions,
                "failed_sessions": self.drive.failed_sessions,
                "requests": self.drive.requests,
                "requests_per_s": self.drive.requests_per_s,
                "sessions_per_min": self.drive.sessions_per_min,
                "events_exported": self.export.rows,
                "bad_records": self.export.bad_records,
            },
            "timings_s": self.timings,
            "report": str(self.report),
        }


def run_demo(
    settings: Settings,
    sim: SimConfig,
    run_dir: Path,
    episodes: int,
    processes: int,
    say: Callable[[str], None],
    on_progress: Callable[[int], None],
) -> DemoResult:
    timings: dict[str, float] = {}
    t = time.perf_counter()
    say("building the simulated world (cached after the first run)")
    world_dir, world = ensure_world(settings.run_dir / "worlds", sim)
    timings["world"] = time.perf_counter() - t
    arms = demo_arms()
    experiments = write_experiments(run_dir / "experiments.toml", arms)
    env = {
        "BOTIFY_CATALOG__PATH": str(world_dir / "catalog.jsonl"),
        "BOTIFY_EXPERIMENTS__PATH": str(experiments),
    }
    t = time.perf_counter()
    say("starting the embedded stack")
    with EmbeddedStack(settings, run_dir / "logs", extra_env=env) as stack:
        endpoints = stack.endpoints
        assert endpoints is not None
        timings["stack_start"] = time.perf_counter() - t
        t = time.perf_counter()
        say(f"driving {episodes:,} sessions from {processes} processes")
        summary = drive(
            endpoints.api, world_dir, world, episodes, processes, sim.seed, sim.user, on_progress
        )
        timings["traffic"] = time.perf_counter() - t
        if summary.sessions == 0:
            first = next((e.error for e in summary.episodes if e.error), "no worker reported")
            raise BackendUnavailableError(f"no simulated session completed; first failure: {first}")
        t = time.perf_counter()
        # Stopping the API flushes its producer: every answered request is on the topic
        # before the export reads the high watermarks.
        say("stopping the API and exporting the events topic")
        stack.stop_service("api")
        kafka = KafkaSettings(
            **{**settings.kafka.model_dump(), "bootstrap_servers": endpoints.broker}
        )
        exported = export_parquet(kafka, run_dir / "events.parquet")
        timings["export"] = time.perf_counter() - t
    t = time.perf_counter()
    say("analysing")
    analysis = analyze_file(exported.path, EXPERIMENT, "C")
    report = write_html(analysis, run_dir / "report.html")
    timings["analysis"] = time.perf_counter() - t
    return DemoResult(run_dir, arms, summary, exported, analysis, report, timings)


def write_results(result: DemoResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_json(), indent=2))
    return path
