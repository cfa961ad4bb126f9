"""Prometheus metrics of one stream worker: its own work, and every experiment arm's.

The worker sees every listen and every session end, so it is where an arm's figures are
counted: sessions ended, time and tracks per session (histograms whose ``_sum``/``_count``
give the pooled mean), listens, listen time and recommendations. They are counted after the
commit, for written transitions only, so a replayed event counts once, and the sessions per
arm and the pooled time per session equal what ``botify analyze`` computes from the exported
events. Labels: experiment, arm, recommender (the arm's, as the events name it); never a
user or a track.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from prometheus_client import Counter, Histogram
from prometheus_client.registry import CollectorRegistry

from botify.events import DecodedListen
from botify.experiments import ExperimentPlan
from botify.state import SessionEnd
from botify.telemetry import precreate
from botify.telemetry.bulk import BulkHistogram

OUTCOMES = ("applied", "duplicate", "dead_letter", "skipped")
STEPS = ("load", "examples", "commit", "count", "dead_letter")
BATCH_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
BATCH_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
DELAY_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Session time is the course's: each listen's fraction of its track, summed over the session.
SESSION_TIME = (0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 50, 100)
SESSION_TRACKS = (1, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)


class ArmSeries(NamedTuple):
    """One (experiment, arm, recommender)'s children, looked up once."""

    sessions: Any
    session_time: Any
    session_tracks: Any
    listens: Any
    listen_time: Any
    recommendations: Any


class StreamMetrics:
    """Implements ``services.stream.agents.StreamObserver`` on a Prometheus registry."""

    def __init__(self, registry: CollectorRegistry, plan: ExperimentPlan) -> None:
        r = registry
        self.events = Counter(
            "botify_stream_events_total",
            "Listen records processed, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.retries = Counter(
            "botify_stream_retries_total",
            "Backend steps that failed and were redone.",
            ["step"],
            registry=r,
        )
        # Not named like the observer method below, which it would hide (a TypeError there).
        self.examples_skipped_total = Counter(
            "botify_stream_examples_skipped_total",
            "Training examples that failed validation (their listens still applied).",
            registry=r,
        )
        self.fold_fallbacks = Counter(
            "botify_stream_fold_fallbacks_total",
            "Users whose batch fold raised (a bug), their events folded one at a time.",
            registry=r,
        )
        self.batch_size = Histogram(
            "botify_stream_batch_size_records",
            "Records per processed batch.",
            buckets=BATCH_SIZES,
            registry=r,
        )
        self.batch_duration = Histogram(
            "botify_stream_batch_duration_seconds",
            "Time to process one batch, retries included.",
            buckets=BATCH_SECONDS,
            registry=r,
        )
        # Observed a batch at a time: one observation per event is the hot path.
        self.delay = BulkHistogram(
            "botify_stream_event_delay_seconds",
            "From an event's timestamp to its state committed in Redis.",
            DELAY_SECONDS,
            r,
        )
        arm = ["experiment", "arm", "recommender"]
        self.sessions = Counter(
            "botify_experiment_sessions_total", "Sessions ended (a last event).", arm, registry=r
        )
        self.session_time = Histogram(
            "botify_experiment_session_time",
            "Listen time per ended session, in tracks (each listen's fraction, summed).",
            arm,
            buckets=SESSION_TIME,
            registry=r,
        )
        self.session_tracks = Histogram(
            "botify_experiment_session_tracks",
            "Listens per ended session.",
            arm,
            buckets=SESSION_TRACKS,
            registry=r,
        )
        self.listens = Counter(
            "botify_experiment_listens_total", "Listens applied.", arm, registry=r
        )
        self.listen_time = Counter(
            "botify_experiment_listen_time_total",
            "Listen time applied, in tracks (fractions summed).",
            arm,
            registry=r,
        )
        self.recommendations = Counter(
            "botify_experiment_recommendations_total",
            "Recommendations served (next events applied).",
            arm,
            registry=r,
        )
        precreate(self.events, [(o,) for o in OUTCOMES])
        precreate(self.retries, [(s,) for s in STEPS])
        self._arms: dict[tuple[str, str, str], ArmSeries] = {}
        for labels in plan.arm_labels():
            self._children(labels)

    def _children(self, labels: tuple[str, str, str]) -> ArmSeries:
        children = self._arms.get(labels)
        if children is None:
            children = ArmSeries(
                *(
                    m.labels(*labels)
                    for m in (
                        self.sessions,
                        self.session_time,
                        self.session_tracks,
                        self.listens,
                        self.listen_time,
                        self.recommendations,
                    )
                )
            )
            self._arms[labels] = children
        return children

    # StreamObserver

    def retried(self, step: str) -> None:
        self.retries.labels(step).inc()

    def examples_skipped(self, count: int) -> None:
        self.examples_skipped_total.inc(count)

    def fold_fell_back(self) -> None:
        self.fold_fallbacks.inc()

    def dead_lettered(self, count: int) -> None:
        self.events.labels("dead_letter").inc(count)

    def skipped(self, count: int) -> None:
        self.events.labels("skipped").inc(count)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_duration.observe(seconds)

    def committed(
        self,
        applied: Sequence[DecodedListen],
        ended: Sequence[tuple[DecodedListen, SessionEnd]],
        duplicates: int,
    ) -> None:
        now_ms = time.time() * 1000.0
        self.events.labels("applied").inc(len(applied))
        if duplicates:
            self.events.labels("duplicate").inc(duplicates)
        stamps = np.fromiter((e.timestamp for e in applied), np.float64, len(applied))
        self.delay.observe_many(np.maximum(now_ms - stamps, 0.0) / 1000.0)
        # Summed per (recommender, arms) first: one increment per arm and batch, not per
        # event; an event's arms are looked up once, whatever the number of experiments.
        per_key: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
        for event in applied:
            experiments = event.experiments
            key = (event.recommender, tuple(experiments.items()) if experiments else ())
            acc = per_key.get(key)
            if acc is None:
                acc = per_key[key] = [0, 0.0, 0]
            acc[0] += 1
            acc[1] += event.time
            if event.recommendation is not None:
                acc[2] += 1
        for event, session in ended:
            for name, arm in event.experiments.items():
                arm_series = self._children((name, arm, event.recommender))
                arm_series.sessions.inc()
                arm_series.session_time.observe(session.time)
                arm_series.session_tracks.observe(session.listens)
        for (recommender, arms), (listens, listened, served) in per_key.items():
            for name, arm in arms:
                arm_series = self._children((name, arm, recommender))
                arm_series.listens.inc(listens)
                arm_series.listen_time.inc(listened)
                if served:
                    arm_series.recommendations.inc(served)
