"""Freshness: how long a listen takes to influence what users are served.

For a listen at time t and a model m, the listen is *learned* by the first promoted version of
m whose training window ends at or after t, and *served* when that version first answers a
request (the first logged event carrying its version). Freshness is served − t, in seconds.
Listens newer than the last version's window were never learned and are counted apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

# The trainer appends one JSON line per training run here (services/trainer/loop.py).
RUNS_FILE = "runs.jsonl"


def read_runs(directory: Path) -> list[dict[str, object]]:
    """The trainer's run reports in ``directory`` (none yet: an empty list)."""
    path = directory / RUNS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Freshness:
    model: str
    versions: int  # promoted versions that were served
    listens: int  # listens that some served version learned
    unlearned: int  # listens after the last served version's window
    p50_s: float | None
    p95_s: float | None
    max_s: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "versions": self.versions,
            "listens": self.listens,
            "unlearned": self.unlearned,
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "max_s": self.max_s,
        }


def served_versions(
    events: pl.DataFrame, model: str, recommenders: Iterable[str], runs: Iterable[Mapping[str, Any]]
) -> pl.DataFrame:
    """``version, window_last_ms, first_served_ms`` of ``model``'s promoted versions that
    answered at least one request of ``recommenders``, by window end."""
    published = pl.DataFrame(
        [
            {"version": r["version"], "window_last_ms": r["window"]["last_ms"]}
            for r in runs
            if r.get("model") == model and r.get("promoted") and r.get("window")
        ],
        schema={"version": pl.Int64, "window_last_ms": pl.Int64},
    )
    first = (
        events.filter(
            pl.col("recommender").is_in(list(recommenders)) & pl.col("model_version").is_not_null()
        )
        .group_by("model_version")
        .agg(first_served_ms=pl.col("timestamp").min())
        .rename({"model_version": "version"})
    )
    return published.join(first, on="version", how="inner").sort("window_last_ms")


def freshness_delays(
    events: pl.DataFrame,
    model: str,
    recommenders: Iterable[str],
    runs: Iterable[Mapping[str, Any]],
    since_ms: int | None = None,
) -> tuple[pl.DataFrame, pl.Series, int]:
    """``served_versions``, each learned listen's freshness in seconds (listen order), and
    how many listens no served version learned."""
    versions = served_versions(events, model, recommenders, runs)
    listens = events.select("timestamp").sort("timestamp")
    if since_ms is not None:
        listens = listens.filter(pl.col("timestamp") >= since_ms)
    if versions.is_empty() or listens.is_empty():
        return versions, pl.Series("s", [], dtype=pl.Float64), listens.height
    # A later version can be served before an earlier one was (a slow API instance); the
    # listen counts as served by whichever learned it first in window order.
    learned = listens.join_asof(
        versions, left_on="timestamp", right_on="window_last_ms", strategy="forward"
    )
    delay = (
        learned.filter(pl.col("first_served_ms").is_not_null())
        .select(((pl.col("first_served_ms") - pl.col("timestamp")) / 1000).alias("s"))
        .get_column("s")
    )
    return versions, delay, learned.height - delay.len()


def freshness(
    events: pl.DataFrame,
    model: str,
    recommenders: Iterable[str],
    runs: Iterable[Mapping[str, Any]],
    since_ms: int | None = None,
) -> Freshness:
    """Freshness of ``model`` over the listens in ``events`` (from ``since_ms`` if given).

    ``events`` is the exported log (``timestamp``, ``recommender``, ``model_version``);
    ``runs`` are the trainer's run reports (``services.trainer.loop``)."""
    versions, delay, unlearned = freshness_delays(events, model, recommenders, runs, since_ms)
    if delay.is_empty():
        return Freshness(model, versions.height, 0, unlearned, None, None, None)
    return Freshness(
        model,
        versions.height,
        delay.len(),
        unlearned,
        round(float(delay.quantile(0.5)), 2),  # type: ignore[arg-type]
        round(float(delay.quantile(0.95)), 2),  # type: ignore[arg-type]
        round(float(delay.max()), 2),  # type: ignore[arg-type]
    )
