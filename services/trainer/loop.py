"""The trainer's loop: examples in, versioned models out.

It reads the examples topic into the bounded on-disk log, and every ``every_s`` seconds (or
sooner, after ``every_examples`` new examples) retrains each model on the newest window,
warm-started from the version in service. A run holds out the most recent slice of the
window, scores the new version and the served one on it, and publishes the new one only if it
is not worse. Each run, promoted or not, is appended to ``runs.jsonl``: the demo reads it to
measure freshness, people read it to see why a version was refused.

The version in service is the one the pointer names, read before each run and again before
its candidate is judged: after ``botify models rollback`` the rolled-back-to version becomes
the parent and the version to beat (even for a run that was training when it happened). So
a rollback is never undone by the version it replaced, only by a newly trained one that
passes the promotion rule against the version now served. The pointer flips only from the
version the candidate was judged against (``ModelStore.publish(replacing=...)``): when it
moved during the judging, the run is reported ``served_changed`` and not promoted (it is not
judged again; the next run is). When the pointer names a version this trainer cannot load,
the run is reported ``served_unloadable`` and nothing is published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import polars as pl

from botify.analysis.freshness import RUNS_FILE
from botify.artifacts import DataWindow, ModelArtifact, ModelMeta
from botify.catalog import Catalog
from botify.errors import ConfigError, PointerMovedError
from botify.evaluation import (
    evaluate,
    listen_time_mse,
    predicts_listen_time,
    split_holdout,
)
from botify.example_log import ExampleLog
from botify.model_store import ModelStore
from botify.models import trained_models
from botify.recommenders import model_readers
from botify.retraining import data_window, refusal, scheduled
from botify.settings import ModelHyperParams, TrainerSettings
from services.trainer.models import model_spec
from services.trainer.train import TrainResult, train_model

logger = logging.getLogger(__name__)

# Why a run ended as it did, as a bounded label (``RunReport.outcome``); ``reason`` says more.
PROMOTED = "promoted"
WORSE_THAN_SERVED = "worse_than_served"
TOO_FEW_EXAMPLES = "too_few_examples"
TRAINING_FAILED = "training_failed"
PUBLICATION_FAILED = "publication_failed"
# The pointer names a version this trainer cannot load: nothing to judge the candidate against.
SERVED_UNLOADABLE = "served_unloadable"
# The pointer moved (a rollback, another trainer) while the candidate was judged: its files
# stay on disk but it is not made current; the next run judges against the version now served.
SERVED_CHANGED = "served_changed"
OUTCOMES = (
    PROMOTED,
    WORSE_THAN_SERVED,
    TOO_FEW_EXAMPLES,
    TRAINING_FAILED,
    PUBLICATION_FAILED,
    SERVED_UNLOADABLE,
    SERVED_CHANGED,
)


@dataclass
class RunReport:
    """One training run of one model."""

    model: str
    started_ms: int
    seconds: float
    examples: int
    window: DataWindow | None
    promoted: bool
    reason: str
    version: int | None = None
    parent: int | None = None
    published_ms: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    served_metrics: dict[str, float] = field(default_factory=dict)
    outcome: str = ""  # one of OUTCOMES
    round: int | None = None  # the round it ran in, from 0
    # Examples that arrived since the previous round (what triggered this one), if known.
    new_examples: int | None = None

    def to_json(self) -> str:
        doc = asdict(self)
        for key in ("metrics", "served_metrics"):
            doc[key] = {k: v if math.isfinite(v) else None for k, v in doc[key].items()}
        return json.dumps(doc, sort_keys=True, allow_nan=False)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class TrainerObserver(Protocol):
    """What the trainer reports (``services.trainer.metrics`` implements it)."""

    def run(self, report: RunReport) -> None:
        """One model's run is done, promoted or not."""

    def round(self) -> None:
        """A round is done."""


@dataclass
class Trainer:
    """Trains and publishes the configured models; holds the versions it serves in memory
    (the parents of the next runs)."""

    settings: TrainerSettings
    catalog: Catalog
    log: ExampleLog
    store: ModelStore
    report_dir: Path
    clock: Callable[[], int] = now_ms
    served: dict[str, ModelArtifact] = field(default_factory=dict)
    # Model -> the version its pointer named at the last look (absent: none published).
    pointed: dict[str, int] = field(default_factory=dict)
    # Model -> why the version its pointer names did not load (absent: it did, or none).
    unloadable: dict[str, str] = field(default_factory=dict)
    # Model -> the recommenders that serve it (botify.recommenders.model_readers).
    readers: dict[str, tuple[str, ...]] = field(default_factory=model_readers)
    runs: int = 0
    rounds: int = 0
    observer: TrainerObserver | None = None
    # The current round's index and new examples, for its reports.
    _current: tuple[int | None, int | None] = (None, None)

    async def restore(self) -> None:
        """Pick up the versions in service (after a restart) as parents."""
        for name in trained_models(self.settings):
            await self.follow_pointer(name)

    async def follow_pointer(self, name: str) -> ModelArtifact | None:
        """The version ``name``'s pointer names, as the parent of its next run: loaded
        again only when the pointer moved elsewhere than this trainer left it (a restart,
        a rollback, another trainer)."""
        version = await self.store.current(name)
        self.unloadable.pop(name, None)
        if version is None:
            self.pointed.pop(name, None)
        else:
            self.pointed[name] = version
        served = self.served.get(name)
        if version is None or (served is not None and served.version == version):
            return served
        if served is not None:
            logger.warning("%s: the pointer moved from v%d to v%d", name, served.version, version)
        try:
            self.served[name] = await asyncio.to_thread(self.store.load, name, version)
        except Exception as exc:  # a pruned or broken version: keep what we had, if anything
            logger.warning("cannot load %s v%d as a parent: %s", name, version, exc)
            self.unloadable[name] = str(exc)
        return self.served.get(name)

    def _hyper(self, name: str) -> ModelHyperParams | None:
        try:
            return model_spec(name).hyper_params(self.settings)
        except ConfigError:  # an unknown model fails in training, where it is reported
            return None

    def window_rows(self, name: str) -> int:
        """The newest examples ``name`` trains on: its own bound, else the trainer's."""
        hyper = self._hyper(name)
        rows = None if hyper is None else hyper.window_rows
        return self.settings.window_rows if rows is None else rows

    async def _evaluate(
        self, name: str, artifact: ModelArtifact, train: pl.DataFrame, holdout: pl.DataFrame
    ) -> dict[str, float]:
        """Ranking on the held-out listens other recommenders chose: a served model's own
        picks are listens its lists already hold, so judged on them the version in service
        always wins. Listen-time error on every held-out listen: a model's picks are where
        it predicted long listens, and the time the user really gave them tests that
        prediction on equal terms for every version."""
        own = self.readers.get(name, ())
        others = holdout.filter(~pl.col("recommender").is_in(list(own)))
        out = await asyncio.to_thread(evaluate, artifact, others, train, self.settings)
        if predicts_listen_time(artifact) and not train.is_empty() and not holdout.is_empty():
            out |= await asyncio.to_thread(listen_time_mse, artifact, holdout, train)
        return out

    def promote_on(self, name: str) -> str:
        """The metric that decides whether a version of ``name`` replaces the served one."""
        hyper = self._hyper(name)
        key = None if hyper is None else hyper.promote_on
        return self.settings.primary_key if key is None else key

    def scheduled(self, round_index: int) -> list[str]:
        """The models round ``round_index`` (from 0) trains: all of them in the first, then
        each model every ``every_rounds`` rounds. Models that share an ``every_rounds`` take
        turns (the i-th of them in rounds ≡ i mod every_rounds), so no round carries all of
        them and the models trained every round never wait for the whole set
        (``botify.retraining.scheduled``)."""
        every: dict[str, int] = {}
        models = trained_models(self.settings)
        for name in models:
            hyper = self._hyper(name)
            every[name] = 1 if hyper is None else hyper.every_rounds
        return scheduled(models, every, round_index)

    async def run_all(
        self, stop: Callable[[], bool] = lambda: False, new_examples: int | None = None
    ) -> list[RunReport]:
        """One round: each scheduled model once, on the same window; ``stop`` is checked
        between models (a round can outlast a service manager's stop grace).
        ``new_examples`` (what arrived since the last round) is recorded in each report."""
        names = self.scheduled(self.rounds)
        self._current = (self.rounds, new_examples)
        self.rounds += 1
        rows = max((self.window_rows(n) for n in names), default=self.settings.window_rows)
        frame = await asyncio.to_thread(self.log.window, None, rows)
        reports = []
        for name in names:
            if stop():
                break
            reports.append(await self.run_one(name, frame))
        if self.observer is not None:
            self.observer.round()
        return reports

    async def run_one(self, name: str, frame: pl.DataFrame) -> RunReport:
        started, t0 = self.clock(), time.perf_counter()
        frame = frame.tail(self.window_rows(name))  # the window is in timestamp order
        train, holdout = split_holdout(
            frame, self.settings.holdout_fraction, self.settings.holdout_max_rows
        )
        report = RunReport(name, started, 0.0, len(train), data_window(train), False, "")
        report.round, report.new_examples = self._current
        if len(train) < self.settings.min_examples:
            report.reason = f"{len(train)} examples, fewer than {self.settings.min_examples}"
            report.outcome = TOO_FEW_EXAMPLES
            return self._done(report, t0)
        parent = await self.follow_pointer(name)
        try:
            result = await asyncio.to_thread(
                train_model,
                name,
                train,
                self.catalog,
                None if parent is None else parent.arrays,
                self.settings,
            )
        except Exception as exc:  # one model's failure must not stop the others
            logger.exception("training %s failed", name)
            report.reason = f"training failed: {exc!r}"
            report.outcome = TRAINING_FAILED
            return self._done(report, t0)
        try:
            await self._judge_and_publish(name, report, result, parent, train, holdout)
        except Exception as exc:  # a bad artifact or a store error: still not the others'
            logger.exception("evaluating or publishing %s failed", name)
            report.reason = f"evaluation or publication failed: {exc!r}"
            report.outcome = PUBLICATION_FAILED
        return self._done(report, t0)

    async def _judge_and_publish(
        self,
        name: str,
        report: RunReport,
        result: TrainResult,
        parent: ModelArtifact | None,
        train: pl.DataFrame,
        holdout: pl.DataFrame,
    ) -> None:
        """Score the new version against the served one and publish it if not worse."""
        assert report.window is not None
        meta = ModelMeta(
            name=name,
            version=0,  # the store allocates it
            parent=None if parent is None else parent.version,
            created_ms=self.clock(),
            window=report.window,
            metrics=dict(result.metrics),
            params=dict(result.params),
        )
        candidate = ModelArtifact(meta, result.arrays)
        report.metrics = {**result.metrics, **await self._evaluate(name, candidate, train, holdout)}
        # The version to beat is the one served now, not the parent: a rollback during the
        # run moved the pointer, and the candidate must beat the version it went back to.
        served = await self.follow_pointer(name)
        pointed = self.pointed.get(name)
        if pointed is not None and (served is None or served.version != pointed):
            # Judged against an older version, or unjudged, it could undo a rollback.
            report.reason = (
                f"the pointer names v{pointed}, which does not load here: "
                f"{self.unloadable.get(name, 'unknown error')}; not promoted until it loads or"
                " the pointer moves"
            )
            report.outcome = SERVED_UNLOADABLE
            return
        if served is not None:
            report.served_metrics = await self._evaluate(name, served, train, holdout)
            reason = refusal(
                report.metrics,
                report.served_metrics,
                self.promote_on(name),
                self.settings.promote_tolerance,
                self.settings.promote_z,
            )
            if reason is not None:
                report.reason, report.outcome = reason, WORSE_THAN_SERVED
                return
        # JSON has no NaN: a metric the window could not give (nothing held out) is left out.
        finite = {k: v for k, v in report.metrics.items() if math.isfinite(v)}
        try:
            published = await self.store.publish(
                replace(meta, metrics=finite), result.arrays, replacing=pointed
            )
        except PointerMovedError as exc:  # judged against a version no longer served
            report.reason, report.outcome = f"not promoted: {exc}", SERVED_CHANGED
            return
        self.served[name] = ModelArtifact(published, result.arrays)
        report.promoted, report.reason, report.outcome = True, "promoted", PROMOTED
        report.version, report.parent = published.version, published.parent
        report.published_ms = self.clock()

    def _done(self, report: RunReport, t0: float) -> RunReport:
        report.seconds = round(time.perf_counter() - t0, 3)
        self.runs += 1
        self.report_dir.mkdir(parents=True, exist_ok=True)
        with open(self.report_dir / RUNS_FILE, "a") as out:
            out.write(report.to_json() + "\n")
        if self.observer is not None:
            self.observer.run(report)
        logger.warning(
            "%s: %s (v%s, %d examples, %.1f s) %s",
            report.model,
            report.reason,
            report.version,
            report.examples,
            report.seconds,
            {k: round(v, 4) for k, v in report.metrics.items()},
        )
        return report


__all__: Sequence[str] = ("RunReport", "Trainer")
