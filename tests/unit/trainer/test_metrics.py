from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.trainer.loop import (
    OUTCOMES,
    PROMOTED,
    TOO_FEW_EXAMPLES,
    WORSE_THAN_SERVED,
    RunReport,
)
from services.trainer.metrics import TrainerMetrics


def report(outcome: str, published_ms: int | None = None, **metrics: float) -> RunReport:
    return RunReport(
        "affinity", 0, 1.5, 900, None, outcome == PROMOTED, outcome,
        published_ms=published_ms, metrics=dict(metrics), outcome=outcome,
    )  # fmt: skip


def test_every_model_and_outcome_series_exists_at_zero() -> None:
    registry = CollectorRegistry()
    TrainerMetrics(registry, ["affinity", "dae"])
    for model in ("affinity", "dae"):
        for outcome in OUTCOMES:
            labels = {"model": model, "outcome": outcome}
            assert registry.get_sample_value("botify_trainer_versions_total", labels) == 0.0
        assert (
            registry.get_sample_value(
                "botify_trainer_last_publication_timestamp_seconds", {"model": model}
            )
            == 0.0
        )


def test_runs_count_promotions_refusals_and_runs_since_the_last_promotion() -> None:
    registry = CollectorRegistry()
    m = TrainerMetrics(registry, ["affinity"])
    m.run(report(PROMOTED, published_ms=1_700_000_000_000, mse=0.1, **{"ndcg@10": 0.2}))
    m.run(report(WORSE_THAN_SERVED, mse=0.3))
    m.run(report(WORSE_THAN_SERVED, mse=float("nan")))
    m.run(report(TOO_FEW_EXAMPLES))  # light traffic: not a run that failed to promote
    m.round()

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert get("botify_trainer_versions_total", model="affinity", outcome=PROMOTED) == 1
    assert get("botify_trainer_versions_total", model="affinity", outcome=WORSE_THAN_SERVED) == 2
    assert get("botify_trainer_runs_since_promotion", model="affinity") == 2
    # The latest finite value of each metric; NaN (nothing held out) keeps the last one.
    assert get("botify_trainer_holdout_metric", model="affinity", metric="mse") == 0.3
    assert get("botify_trainer_holdout_metric", model="affinity", metric="ndcg@10") == 0.2
    assert get("botify_trainer_last_publication_timestamp_seconds", model="affinity") == 1.7e9
    assert get("botify_trainer_run_duration_seconds_count", model="affinity") == 4
    assert get("botify_trainer_rounds_total") == 1
