"""Prometheus metrics of the trainer: rounds, runs, promotions and refusals, the latest
holdout metrics, the example log's size and each model's last publication.

Labels: model (a configured name), outcome (``loop.OUTCOMES``) and metric (the evaluation's
metric names); all bounded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from botify.telemetry import precreate
from services.trainer.loop import OUTCOMES, PROMOTED, TOO_FEW_EXAMPLES, RunReport

RUN_SECONDS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class TrainerMetrics:
    """Implements ``services.trainer.loop.TrainerObserver`` on a Prometheus registry."""

    def __init__(self, registry: CollectorRegistry, models: Sequence[str]) -> None:
        r = registry
        self.rounds = Counter("botify_trainer_rounds_total", "Training rounds done.", registry=r)
        self.last_round = Gauge(
            "botify_trainer_last_round_timestamp_seconds",
            "When the last round ended (Unix time).",
            registry=r,
        )
        self.run_duration = Histogram(
            "botify_trainer_run_duration_seconds",
            "One model's run: training, evaluation and publication.",
            ["model"],
            buckets=RUN_SECONDS,
            registry=r,
        )
        self.versions = Counter(
            "botify_trainer_versions_total",
            "Runs by outcome: promoted, or why the version was not.",
            ["model", "outcome"],
            registry=r,
        )
        self.runs_since_promotion = Gauge(
            "botify_trainer_runs_since_promotion",
            "Runs of the model with data that promoted nothing since its last promoted version "
            "(this process's life; runs with too few examples are not counted).",
            ["model"],
            registry=r,
        )
        self.holdout = Gauge(
            "botify_trainer_holdout_metric",
            "The latest evaluated run's held-out metrics (ndcg@k, hr@k, mse, ...).",
            ["model", "metric"],
            registry=r,
        )
        self.examples = Gauge(
            "botify_trainer_run_examples",
            "Examples the latest run trained on.",
            ["model"],
            registry=r,
        )
        self.last_publication = Gauge(
            "botify_trainer_last_publication_timestamp_seconds",
            "When the model's last version was published (Unix time; 0: none yet).",
            ["model"],
            registry=r,
        )
        self.log_rows = Gauge(
            "botify_trainer_example_log_rows", "Training examples in the log's parts.", registry=r
        )
        self.log_bytes = Gauge(
            "botify_trainer_example_log_bytes", "Size of the log's parts on disk.", registry=r
        )
        self.log_buffered = Gauge(
            "botify_trainer_example_log_buffered_rows",
            "Examples read but not yet written to a part.",
            registry=r,
        )
        precreate(self.versions, [(m, o) for m in models for o in OUTCOMES])
        self.examples_read = Counter(
            "botify_trainer_examples_read_total",
            "Training examples read from the topic into the log (duplicates not counted).",
            registry=r,
        )
        for metric in (self.run_duration, self.runs_since_promotion, self.examples):
            precreate(metric, [(m,) for m in models])
        precreate(self.last_publication, [(m,) for m in models])

    def run(self, report: RunReport) -> None:
        self.run_duration.labels(report.model).observe(report.seconds)
        self.versions.labels(report.model, report.outcome or "unknown").inc()
        self.examples.labels(report.model).set(report.examples)
        since = self.runs_since_promotion.labels(report.model)
        if report.outcome == PROMOTED:
            since.set(0)
        elif report.outcome != TOO_FEW_EXAMPLES:  # a trickle of traffic is not a refusal
            since.inc()
        for key, value in report.metrics.items():
            if math.isfinite(value):
                self.holdout.labels(report.model, key).set(value)
        if report.published_ms is not None:
            self.last_publication.labels(report.model).set(report.published_ms / 1000.0)

    def round(self) -> None:
        self.rounds.inc()
        self.last_round.set(time.time())

    def example_log(self, rows: int, size: int, buffered: int) -> None:
        self.log_rows.set(rows)
        self.log_bytes.set(size)
        self.log_buffered.set(buffered)
