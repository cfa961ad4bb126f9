"""The trainer's round: train on the newest window, judge against the served version on the
held-out tail, publish only what is not worse, and log every run."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import polars as pl
import pytest

pytest.importorskip("torch")

from botify import retraining  # noqa: E402
from botify.artifacts import PAD, TRACK_IDS, TRACK_NEIGHBOURS, DataWindow  # noqa: E402
from botify.evaluation import split_holdout  # noqa: E402
from botify.example_log import ExampleLog  # noqa: E402
from botify.model_store import MemoryVersionPointers, ModelStore  # noqa: E402
from botify.settings import TrainerSettings  # noqa: E402
from botify.training import TrainingExample  # noqa: E402
from services.trainer import loop  # noqa: E402
from services.trainer.loop import RunReport, Trainer  # noqa: E402
from services.trainer.train import TrainResult, train_model  # noqa: E402
from tests.unit.trainer.conftest import World, fast_settings  # noqa: E402

MODELS = ("affinity", "contextual")
PRIMARY = "ndcg@10"


def settings(**overrides: object) -> TrainerSettings:
    return fast_settings(models=MODELS, min_examples=100, **overrides)


def fill(log: ExampleLog, frame: pl.DataFrame) -> ExampleLog:
    log.append(TrainingExample(**row) for row in frame.iter_rows(named=True))
    return log


def new_trainer(
    tmp_path: Path, world: World, cfg: TrainerSettings, store: ModelStore | None = None
) -> Trainer:
    log = fill(ExampleLog(tmp_path / "examples", 50_000, 10), world.frame)
    store = store or ModelStore(tmp_path / "models", None)
    clock = iter(range(1_800_000_000_000, 1_800_000_000_000 + 10_000))
    return Trainer(cfg, world.catalog, log, store, tmp_path / "trainer", clock=lambda: next(clock))


def runs(tmp_path: Path, report_dir: str = "trainer") -> list[dict[str, object]]:
    """runs.jsonl, parsed strictly: a NaN or an Infinity in it fails the test."""

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in runs.jsonl")

    lines = (tmp_path / report_dir / "runs.jsonl").read_text().splitlines()
    return [json.loads(line, parse_constant=refuse) for line in lines]


def fake_result(world: World) -> TrainResult:
    """A servable model without training: each track's next tracks in catalog order."""
    ids = world.catalog.ids.astype(np.int64)
    table = np.full((len(ids), 5), PAD, dtype=np.int64)
    for i in range(len(ids)):
        table[i] = np.roll(ids, -i - 1)[:5]
    return TrainResult({TRACK_IDS: ids, TRACK_NEIGHBOURS: table}, {"steps": 1.0}, {"fake": True})


def fake_training(world: World, calls: list[tuple[str, object]] | None = None) -> Callable:
    def train(name: str, frame: pl.DataFrame, catalog: object, parent: object, cfg: object):  # type: ignore[no-untyped-def]
        if calls is not None:
            calls.append((name, parent))
        return fake_result(world)

    return train


def fixed_scores(candidate: float, served: float, **extra: float) -> Callable:
    """An ``evaluate`` that scores the new version (not yet numbered) and the served one."""

    def evaluate(artifact, holdout, train, cfg) -> dict[str, float]:  # type: ignore[no-untyped-def]
        value = candidate if artifact.meta.version == 0 else served
        return {PRIMARY: value, "hr@10": value, "evaluated": 1000.0, **extra}

    return evaluate


# -- the first rounds --------------------------------------------------------------------------


async def test_first_round_publishes_every_model_as_version_one_trained_on_the_train_split(
    tmp_path: Path, world: World
) -> None:
    cfg = settings()
    trainer = new_trainer(tmp_path, world, cfg)
    reports = await trainer.run_all()

    train, holdout = split_holdout(world.frame, cfg.holdout_fraction, cfg.holdout_max_rows)
    assert len(holdout) > 0
    expected = DataWindow(
        int(train["timestamp"].min()),
        int(train["timestamp"].max()),
        len(train),  # type: ignore[arg-type]
    )
    assert [r.model for r in reports] == list(MODELS)
    for report in reports:
        assert report.promoted and report.reason == "promoted"
        assert (report.version, report.parent) == (1, None)
        assert report.window == expected and report.examples == len(train)
        assert report.served_metrics == {}
        assert report.metrics[PRIMARY] >= 0 and report.metrics["evaluated"] > 0
        assert all(math.isfinite(v) for v in report.metrics.values())
        assert await trainer.store.current(report.model) == 1
        published = trainer.store.load(report.model, 1).meta
        assert published.window == expected and published.parent is None
        assert published.metrics[PRIMARY] == report.metrics[PRIMARY]
        assert trainer.served[report.model].version == 1
    assert trainer.runs == len(MODELS)


async def test_second_round_warm_starts_from_the_served_version(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = new_trainer(tmp_path, world, settings())
    await trainer.run_all()
    first = {name: trainer.served[name] for name in MODELS}

    parents: dict[str, Mapping[str, np.ndarray] | None] = {}

    def spy(name, frame, catalog, parent, cfg):  # type: ignore[no-untyped-def]
        parents[name] = parent
        return train_model(name, frame, catalog, parent, cfg)

    monkeypatch.setattr(loop, "train_model", spy)
    # Promotion is another test's subject: here every version goes out.
    monkeypatch.setattr(retraining, "better", lambda *args: True)
    reports = await trainer.run_all()

    for report in reports:
        assert parents[report.model] is first[report.model].arrays
        assert (report.version, report.parent) == (2, 1)
        assert trainer.store.load(report.model, 2).meta.parent == 1
        assert report.served_metrics[PRIMARY] >= 0  # the parent was scored on the same holdout
        assert await trainer.store.current(report.model) == 2


async def test_a_worse_version_is_refused_and_the_served_one_stays(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    trainer = new_trainer(tmp_path, world, settings())
    await trainer.run_all()
    served = dict(trainer.served)

    monkeypatch.setattr(loop, "evaluate", fixed_scores(candidate=0.1, served=0.5))
    reports = await trainer.run_all()

    for report in reports:
        assert not report.promoted and report.version is None
        assert report.reason == f"{PRIMARY} 0.1 worse than served 0.5"
        assert report.metrics[PRIMARY] == 0.1 and report.served_metrics[PRIMARY] == 0.5
        assert await trainer.store.current(report.model) == 1
        assert trainer.store.versions(report.model) == [1]
        assert trainer.served[report.model] is served[report.model]
    refused = [r for r in runs(tmp_path) if not r["promoted"]]
    assert [r["model"] for r in refused] == list(MODELS)


async def test_a_version_within_the_holdouts_noise_is_promoted(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    trainer = new_trainer(tmp_path, world, settings(promote_z=1.96))
    await trainer.run_all()
    # 1000 queries at 0.5: one standard error is about 0.016.
    monkeypatch.setattr(loop, "evaluate", fixed_scores(candidate=0.49, served=0.5))
    reports = await trainer.run_all()
    assert all(r.promoted and r.version == 2 for r in reports)


async def test_a_model_whose_training_raises_is_reported_and_the_others_still_train(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []
    fake = fake_training(world, calls)

    def train(name, frame, catalog, parent, cfg):  # type: ignore[no-untyped-def]
        if name == MODELS[0]:
            raise RuntimeError("boom")
        return fake(name, frame, catalog, parent, cfg)

    monkeypatch.setattr(loop, "train_model", train)
    trainer = new_trainer(tmp_path, world, settings())
    failed, ok = await trainer.run_all()

    assert not failed.promoted and failed.reason == "training failed: RuntimeError('boom')"
    assert failed.version is None and await trainer.store.current(MODELS[0]) is None
    assert ok.promoted and ok.version == 1
    assert [c[0] for c in calls] == [MODELS[1]]
    assert [(r["model"], r["promoted"]) for r in runs(tmp_path)] == [
        (MODELS[0], False),
        (MODELS[1], True),
    ]


@pytest.mark.parametrize("stage", ["evaluate", "publish"])
async def test_a_model_whose_evaluation_or_publication_raises_does_not_stop_the_others(
    stage: str, tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    trainer = new_trainer(tmp_path, world, settings())
    if stage == "evaluate":
        real = loop.evaluate

        def evaluate(artifact, holdout, train, cfg):  # type: ignore[no-untyped-def]
            if artifact.meta.name == MODELS[0]:
                raise ValueError("bad lists")
            return real(artifact, holdout, train, cfg)

        monkeypatch.setattr(loop, "evaluate", evaluate)
    else:
        real_publish = trainer.store.publish

        async def publish(meta, arrays, **kwargs):  # type: ignore[no-untyped-def]
            if meta.name == MODELS[0]:
                raise ValueError("bad lists")
            return await real_publish(meta, arrays, **kwargs)

        monkeypatch.setattr(trainer.store, "publish", publish)
    failed, ok = await trainer.run_all()

    assert not failed.promoted and "ValueError('bad lists')" in failed.reason
    assert MODELS[0] not in trainer.served
    assert ok.promoted and ok.version == 1
    assert [r["model"] for r in runs(tmp_path)] == list(MODELS)


async def test_versions_are_judged_only_on_listens_other_recommenders_chose(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    arms = ["affinity", "contextual", "random"]
    frame = world.frame.with_columns(
        recommender=pl.Series([arms[i % 3] for i in range(world.frame.height)])
    )
    judged: list[tuple[str, int, pl.DataFrame]] = []

    def evaluate(artifact, holdout, train, cfg) -> dict[str, float]:  # type: ignore[no-untyped-def]
        judged.append((artifact.meta.name, artifact.meta.version, holdout))
        return {PRIMARY: 0.5, "evaluated": 100.0}

    monkeypatch.setattr(loop, "train_model", fake_training(world))
    monkeypatch.setattr(loop, "evaluate", evaluate)
    cfg = settings()
    log = fill(ExampleLog(tmp_path / "examples", 50_000, 10), frame)
    trainer = Trainer(cfg, world.catalog, log, ModelStore(tmp_path / "models", None), tmp_path)
    await trainer.run_all()
    await trainer.run_all()

    _, holdout = split_holdout(frame, cfg.holdout_fraction, cfg.holdout_max_rows)
    assert set(holdout["recommender"]) == set(arms)
    assert [(name, version) for name, version, _ in judged] == [
        ("affinity", 0),
        ("contextual", 0),
        ("affinity", 0),
        ("affinity", 1),  # the served version, on the same rows
        ("contextual", 0),
        ("contextual", 1),
    ]
    for name, _, rows in judged:
        expected = holdout.filter(pl.col("recommender") != name)
        assert rows["offset"].to_list() == expected["offset"].to_list()


@pytest.mark.parametrize("rows", [0, 50])
async def test_too_few_examples_are_not_trained_on_and_the_report_says_why(
    rows: int, tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: object) -> None:
        raise AssertionError("trained on too few examples")

    monkeypatch.setattr(loop, "train_model", never)
    cfg = settings(holdout_fraction=0.0)
    log = fill(ExampleLog(tmp_path / "examples", 50_000, 10), world.frame.head(rows))
    trainer = Trainer(cfg, world.catalog, log, ModelStore(tmp_path / "models", None), tmp_path)
    reports = await trainer.run_all()

    for report in reports:
        assert not report.promoted and report.version is None
        assert report.reason == f"{rows} examples, fewer than 100"
        assert report.examples == rows
        assert (report.window is None) == (rows == 0)
        assert await trainer.store.current(report.model) is None
    assert [r["reason"] for r in runs(tmp_path, ".")] == [r.reason for r in reports]


async def test_run_reports_are_json_lines_without_nan_and_nan_metrics_are_not_published(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    monkeypatch.setattr(
        loop, "evaluate", fixed_scores(0.5, 0.5, mse=float("nan"), loss=float("inf"))
    )
    trainer = new_trainer(tmp_path, world, settings())
    await trainer.run_all()
    await trainer.run_all()

    logged = runs(tmp_path)
    assert len(logged) == 2 * len(MODELS)
    for line in logged:
        assert line["metrics"]["mse"] is None and line["metrics"]["loss"] is None  # type: ignore[index]
        assert line["metrics"][PRIMARY] == 0.5  # type: ignore[index]
        assert isinstance(line["window"], dict) and line["window"]["examples"] > 0
    assert all(line["served_metrics"]["mse"] is None for line in logged[len(MODELS) :])  # type: ignore[index]
    published = trainer.store.load(MODELS[0], 2).meta.metrics
    assert "mse" not in published and "loss" not in published and published[PRIMARY] == 0.5


def test_a_report_round_trips_through_json() -> None:
    report = RunReport("affinity", 1, 0.5, 10, DataWindow(1, 2, 10), True, "promoted", 3, 2, 4)
    report.metrics = {PRIMARY: 0.25}
    doc = json.loads(report.to_json())
    assert doc["window"] == {"first_ms": 1, "last_ms": 2, "examples": 10}
    assert (doc["version"], doc["parent"], doc["published_ms"]) == (3, 2, 4)
    assert doc["metrics"] == {PRIMARY: 0.25}


# -- scheduling and restarts -------------------------------------------------------------------


async def test_restore_picks_up_the_current_versions_as_parents(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(loop, "train_model", fake_training(world, calls))
    store = ModelStore(tmp_path / "models", None)
    before = new_trainer(tmp_path / "before", world, settings(), store)
    await before.run_all()

    after = new_trainer(tmp_path / "after", world, settings(), store)
    assert after.served == {}
    await after.restore()
    restored = dict(after.served)
    assert {name: a.version for name, a in restored.items()} == dict.fromkeys(MODELS, 1)
    calls.clear()
    reports = await after.run_all()
    assert [name for name, _ in calls] == list(MODELS)
    assert all(parent is restored[name].arrays for name, parent in calls)
    assert [(r.version, r.parent) for r in reports] == [(2, 1), (2, 1)]


async def test_restore_without_the_current_version_publishes_nothing_unjudged(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    store = ModelStore(tmp_path / "models", None)
    await new_trainer(tmp_path / "before", world, settings(), store).run_all()
    shutil.rmtree(store.path(MODELS[0], 1))

    after = new_trainer(tmp_path / "after", world, settings(), store)
    await after.restore()
    assert list(after.served) == [MODELS[1]]
    assert f"cannot load {MODELS[0]} v1" in caplog.text
    reports = await after.run_all()
    # Nothing to judge the first model's candidate against: not published unjudged.
    assert [(r.version, r.parent, r.outcome) for r in reports] == [
        (None, None, loop.SERVED_UNLOADABLE),
        (2, 1, loop.PROMOTED),
    ]
    assert f"v1, which does not load here: model {MODELS[0]} v1 is not at" in reports[0].reason


async def test_restore_with_nothing_published_serves_nothing(tmp_path: Path, world: World) -> None:
    trainer = new_trainer(tmp_path, world, settings())
    await trainer.restore()
    assert trainer.served == {}


def test_models_train_every_few_rounds_as_configured_and_all_in_the_first(
    tmp_path: Path, world: World
) -> None:
    from botify.settings import ModelHyperParams

    cfg = settings(
        contextual=ModelHyperParams(every_rounds=3),
        affinity=ModelHyperParams(window_rows=123),
    )
    trainer = new_trainer(tmp_path, world, cfg)
    assert [trainer.scheduled(r) for r in range(4)] == [
        ["affinity", "contextual"],
        ["affinity"],
        ["affinity"],
        ["affinity", "contextual"],
    ]
    assert trainer.window_rows("affinity") == 123
    assert trainer.window_rows("contextual") == cfg.window_rows


def test_models_with_the_same_period_take_turns_after_the_first_round(
    tmp_path: Path, world: World
) -> None:
    every2 = {"every_rounds": 2}
    cfg = fast_settings(
        models=("affinity", "contextual", "next_track", "dae"),
        contextual=every2,
        next_track=every2,
        dae=every2,
    )
    trainer = new_trainer(tmp_path, world, cfg)
    assert [trainer.scheduled(r) for r in range(5)] == [
        ["affinity", "contextual", "next_track", "dae"],
        ["affinity", "next_track"],
        ["affinity", "contextual", "dae"],
        ["affinity", "next_track"],
        ["affinity", "contextual", "dae"],
    ]


async def test_a_model_promoted_on_listen_time_error_is_judged_on_it(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botify.settings import ModelHyperParams

    cfg = fast_settings(
        models=("affinity",), min_examples=100, affinity=ModelHyperParams(promote_on="mse")
    )
    trainer = new_trainer(tmp_path, world, cfg)
    assert trainer.promote_on("affinity") == "mse"
    assert trainer.promote_on("contextual") == cfg.primary_key
    first = await trainer.run_all()
    assert first[0].promoted and "mse" in first[0].metrics
    # A second version with a worse listen-time error than the served one is refused,
    # whatever its ranking says.
    import services.trainer.loop as loop

    real = loop.listen_time_mse
    calls = iter([0.30, 0.10])  # candidate, then served

    def worse(*args: object, **kwargs: object) -> dict[str, float]:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        return {**out, "mse": next(calls)}

    monkeypatch.setattr(loop, "listen_time_mse", worse)
    second = await trainer.run_all()
    assert not second[0].promoted and second[0].reason.startswith("mse 0.3 worse")


async def test_each_report_records_its_round_and_the_examples_that_triggered_it(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "train_model", fake_training(world))
    trainer = new_trainer(tmp_path, world, settings())
    first = await trainer.run_all(new_examples=1234)
    second = await trainer.run_all()
    assert {(r.round, r.new_examples) for r in first} == {(0, 1234)}
    assert {(r.round, r.new_examples) for r in second} == {(1, None)}
    logged = [(r["round"], r["new_examples"]) for r in runs(tmp_path)]
    assert logged == [(0, 1234)] * len(first) + [(1, None)] * len(second)


# -- after a rollback --------------------------------------------------------------------------


async def two_versions_promoted(
    tmp_path: Path,
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    calls: list[tuple[str, object]] | None = None,
) -> Trainer:
    """A trainer that promoted contextual v1 then v2 (every candidate passes while these
    patches hold), with the pointer on v2."""
    monkeypatch.setattr(loop, "train_model", fake_training(world, calls))
    monkeypatch.setattr(loop, "refusal", lambda *args: None)
    trainer = new_trainer(tmp_path, world, fast_settings(models=("contextual",), min_examples=100))
    await trainer.run_all()
    await trainer.run_all()
    return trainer


def scored_by_version(scores: dict[int, float]) -> Callable:
    """An ``evaluate`` that scores each artifact by its version (0: the candidate)."""

    def evaluate(artifact, holdout, train, cfg) -> dict[str, float]:  # type: ignore[no-untyped-def]
        value = scores[artifact.meta.version]
        return {PRIMARY: value, "hr@10": value, "evaluated": 1000.0}

    return evaluate


async def test_after_a_rollback_the_trainer_beats_the_rolled_back_to_version_or_publishes_nothing(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, object]] = []
    trainer = await two_versions_promoted(tmp_path, world, monkeypatch, calls)
    assert await trainer.store.current("contextual") == 2
    await trainer.store.rollback("contextual", 1)
    monkeypatch.undo()
    monkeypatch.setattr(loop, "train_model", fake_training(world, calls))

    # v2 scored worse than the candidate, v1 better: judged against v1, it is refused.
    scores = {0: 0.3, 1: 0.4, 2: 0.2}
    monkeypatch.setattr(loop, "evaluate", scored_by_version(scores))
    calls.clear()
    (report,) = await trainer.run_all()
    assert not report.promoted and report.served_metrics[PRIMARY] == 0.4
    assert calls[0][1] is trainer.served["contextual"].arrays  # the parent: v1
    assert trainer.served["contextual"].version == 1
    assert await trainer.store.current("contextual") == 1

    scores[0] = 0.5  # a new version that is better than v1 replaces it
    (report,) = await trainer.run_all()
    assert report.promoted and (report.version, report.parent) == (3, 1)
    assert await trainer.store.current("contextual") == 3


async def test_a_rollback_during_a_run_makes_the_candidate_beat_the_rolled_back_to_version(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = await two_versions_promoted(tmp_path, world, monkeypatch)
    monkeypatch.undo()
    pointers = trainer.store._pointers
    assert isinstance(pointers, MemoryVersionPointers)

    def train_while_rolled_back(name, frame, catalog, parent, cfg):  # type: ignore[no-untyped-def]
        pointers.pointers[name] = 1  # botify models rollback, while this run trains on v2
        return fake_result(world)

    monkeypatch.setattr(loop, "train_model", train_while_rolled_back)
    scores = {0: 0.3, 1: 0.4, 2: 0.2}
    monkeypatch.setattr(loop, "evaluate", scored_by_version(scores))
    (report,) = await trainer.run_all()
    # Better than v2, its parent, but judged against v1, which is served now: refused.
    assert not report.promoted and report.served_metrics[PRIMARY] == 0.4
    assert await trainer.store.current("contextual") == 1


async def test_a_rollback_while_the_candidate_is_judged_is_not_undone(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = await two_versions_promoted(tmp_path, world, monkeypatch)
    pointers = trainer.store._pointers
    assert isinstance(pointers, MemoryVersionPointers)
    judged: list[int] = []

    def evaluate(artifact, holdout, train, cfg) -> dict[str, float]:  # type: ignore[no-untyped-def]
        judged.append(artifact.meta.version)
        if artifact.meta.version == 2:  # the served one, judged: the operator rolls back now
            pointers.pointers["contextual"] = 1
        return {PRIMARY: 0.5, "hr@10": 0.5, "evaluated": 1000.0}

    monkeypatch.setattr(loop, "evaluate", evaluate)
    (report,) = await trainer.run_all()
    assert judged == [0, 2]
    assert (report.promoted, report.outcome, report.version) == (False, loop.SERVED_CHANGED, None)
    assert "judged against v2, but the pointer names v1" in report.reason
    assert await trainer.store.current("contextual") == 1
    assert 3 in trainer.store.versions("contextual")  # its files stay until pruned
    assert trainer.served["contextual"].version == 2  # not the unpromoted candidate

    (report,) = await trainer.run_all()  # the next run is judged against v1
    assert report.promoted and judged[-1] == 1
    assert (report.version, await trainer.store.current("contextual")) == (4, 4)


async def test_a_pointer_to_a_version_that_does_not_load_stops_promotion_for_the_run(
    tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = await two_versions_promoted(tmp_path, world, monkeypatch)
    await trainer.store.rollback("contextual", 1)
    (trainer.store.path("contextual", 1) / "track_ids.npy").unlink()  # broken after the move
    (report,) = await trainer.run_all()
    assert (report.promoted, report.outcome) == (False, loop.SERVED_UNLOADABLE)
    assert "the pointer names v1, which does not load" in report.reason
    assert await trainer.store.current("contextual") == 1
    # With nothing loaded at all (a restart), nothing is published unjudged either.
    fresh = new_trainer(tmp_path / "fresh", world, trainer.settings, trainer.store)
    (report,) = await fresh.run_all()
    assert (report.promoted, report.outcome) == (False, loop.SERVED_UNLOADABLE)
    assert await trainer.store.current("contextual") == 1
