"""The trainer's rules: when a round is due, which models it trains, what a version learned
from, and whether it replaces the served one."""

from __future__ import annotations

import polars as pl
import pytest

from botify.artifacts import DataWindow
from botify.retraining import data_window, due, refusal, scheduled


@pytest.mark.parametrize(
    ("last_run", "now", "new", "expected"),
    [
        (0.0, 100.0, 0, False),  # nothing new: never, however long ago
        (0.0, 14.9, 10, False),  # something new, too soon
        (0.0, 15.0, 10, True),  # something new, every_s passed
        (0.0, 1.0, 500, True),  # enough new examples: at once
        (0.0, 1.0, 499, False),
        (10.0, 5.0, 499, False),  # a clock that went back is not "long ago"
    ],
)
def test_due_after_every_s_with_something_new_or_after_every_examples(
    last_run: float, now: float, new: int, expected: bool
) -> None:
    assert due(last_run, now, new, every_s=15.0, every_examples=500) is expected


def test_the_first_round_trains_every_model_then_each_every_its_rounds() -> None:
    models = ["a", "b", "c"]
    rounds = [scheduled(models, {"b": 2, "c": 3}, r) for r in range(7)]
    assert rounds == [
        ["a", "b", "c"],
        ["a"],
        ["a", "b"],
        ["a", "c"],
        ["a", "b"],
        ["a"],
        ["a", "b", "c"],
    ]


def test_models_sharing_a_period_take_turns() -> None:
    models = ["x", "y", "z"]
    rounds = [scheduled(models, dict.fromkeys(models, 2), r) for r in range(5)]
    # x and z share phase 0 (the first and third of period 2), y has phase 1.
    assert rounds == [["x", "y", "z"], ["y"], ["x", "z"], ["y"], ["x", "z"]]


def test_the_data_window_spans_the_frame_it_learned_from() -> None:
    frame = pl.DataFrame({"timestamp": [30, 10, 20]}, schema={"timestamp": pl.Int64})
    assert data_window(frame) == DataWindow(10, 30, 3)
    assert data_window(frame.clear()) is None


def test_a_version_is_refused_only_when_worse_than_the_served_one() -> None:
    assert refusal({"ndcg@10": 0.1}, None, "ndcg@10", 0.0, 0.0) is None  # nothing to beat
    assert refusal({"ndcg@10": 0.3}, {"ndcg@10": 0.2}, "ndcg@10", 0.0, 0.0) is None
    assert refusal({"ndcg@10": 0.2}, {"ndcg@10": 0.2}, "ndcg@10", 0.0, 0.0) is None  # a tie
    reason = refusal({"ndcg@10": 0.1}, {"ndcg@10": 0.2}, "ndcg@10", 0.0, 0.0)
    assert reason == "ndcg@10 0.1 worse than served 0.2"
    # A minimised metric: lower is better.
    assert refusal({"mse": 0.1}, {"mse": 0.2}, "mse", 0.0, 0.0) is None
    assert refusal({"mse": 0.3}, {"mse": 0.2}, "mse", 0.0, 0.0) is not None
