"""A stack whose trainer learns one model fast and whose every arm serves it."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from botify.catalog import Catalog, write_catalog
from botify.settings import ModelHyperParams
from botify_sim.client import BotifyClient


def one_model_env(
    directory: Path, catalog: Catalog, model: str, **overrides: str
) -> dict[str, str]:
    """Write ``catalog`` and an experiment whose two arms both serve ``model`` into
    ``directory``; return the BOTIFY_* variables of a stack whose trainer trains only
    ``model``, in short rounds (``overrides`` win)."""
    write_catalog(catalog.tracks, directory / "catalog.jsonl")
    (directory / "experiments.toml").write_text(
        f'[[experiment]]\nname = "ALL"\ngroups = 2\narms = {{ C = "{model}", T1 = "{model}" }}\n'
    )
    return {
        "BOTIFY_RUN_DIR": str(directory),
        "BOTIFY_CATALOG__PATH": str(directory / "catalog.jsonl"),
        "BOTIFY_EXPERIMENTS__PATH": str(directory / "experiments.toml"),
        "BOTIFY_TRAINER__MODELS": json.dumps([model]),
        "BOTIFY_TRAINER__EVERY_S": "2",
        "BOTIFY_TRAINER__MIN_EXAMPLES": "50",
        "BOTIFY_TRAINER__DEVICE": "cpu",
        "BOTIFY_TRAINER__TRAIN_BUDGET_S": "1",
        "BOTIFY_TRAINER__EXPORT_BUDGET_S": "1",
        # The shared defaults with a 1 s budget, not the model's tuned section: a short
        # run of any model, promoted on the trainer's primary metric.
        f"BOTIFY_TRAINER__{model.upper()}": ModelHyperParams(budget_s=1).model_dump_json(),
        "BOTIFY_TRAINER__TOP_K": "20",
        **overrides,
    }


def served_version(metrics_text: str, model: str) -> int:
    """An API's ``botify_api_model_version`` gauge for ``model`` (0: none yet)."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "botify_api_model_version" and sample.labels["model"] == model:
                return int(sample.value)
    return 0


@dataclass
class TaughtTraffic:
    sessions: int = 0
    # The served version when the traffic stopped (0: none yet).
    version: int = 0
    failures: list[str] = field(default_factory=list)


def teach_until_second_version(
    api: str,
    catalog: Catalog,
    model: str,
    *,
    users: int,
    max_sessions: int,
    deadline_s: float,
    steps: int = 8,
    sessions_after: int = 0,
) -> TaughtTraffic:
    """Seeded sessions of ``steps`` listens with a taste a model can learn (user u likes the
    artists whose number is u mod 10), until the API serves ``model``'s version 2 (read
    every 25 sessions) and ``sessions_after`` more have run, or either bound is reached.
    Failed sessions are counted, not raised, so that the caller's assertions name them."""
    ids = catalog.ids.tolist()
    rng = random.Random(0)
    traffic = TaughtTraffic()
    stop_at = max_sessions
    client = BotifyClient(api, timeout=10)
    deadline = time.monotonic() + deadline_s
    try:
        while traffic.sessions < max_sessions and time.monotonic() < deadline:
            user = rng.randrange(users)
            track, listened = rng.choice(ids), 1.0
            try:
                for _ in range(steps):
                    track = client.next(user, track, listened)
                    liked = int(catalog.artist_of(track).split()[-1]) % 10 == user % 10
                    listened = 0.95 if liked else 0.05
                client.last(user, track, listened)
            except Exception as exc:  # counted: the caller's assertion names them
                traffic.failures.append(repr(exc))
                # A fresh connection: the failed one may be in any state.
                client.close()
                client = BotifyClient(api, timeout=10)
            traffic.sessions += 1
            if traffic.version < 2 and traffic.sessions % 25 == 0:
                metrics = httpx.get(f"{api}/metrics", timeout=10).text
                traffic.version = served_version(metrics, model)
                stop_at = traffic.sessions + sessions_after
            if traffic.version >= 2 and traffic.sessions >= stop_at:
                break
    finally:
        client.close()
    return traffic
