"""The report's JSON shapes: the course table's exact keys, and the richer dict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botify.analysis import (
    COURSE_COLUMNS,
    AnalysisInputError,
    AnalysisReport,
    analyze,
    load_log,
)
from tests.unit.analysis.logs import EXPERIMENT, original_log, write_jsonl


@pytest.fixture
def report(tmp_path: Path) -> AnalysisReport:
    rows = original_log(seed=21)
    return analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT), cuped=True)


def test_course_json_has_exactly_the_course_keys_in_order(report: AnalysisReport) -> None:
    table = report.to_json()
    assert table and all(list(row) == list(COURSE_COLUMNS) for row in table)
    assert all(isinstance(row["significant"], bool) for row in table)
    json.dumps(table, allow_nan=False)


def test_rich_dict_carries_srm_extras_and_cuped_and_is_strict_json(report: AnalysisReport) -> None:
    data = report.to_dict()
    assert data["table"] == report.to_json()
    assert set(data["srm"]) == {"counts", "chi2", "p_value", "threshold", "mismatch"}
    assert {a["arm"] for a in data["arms"]} == {"C", "T1", "T2"}
    assert len(data["extended"]) == len(data["table"]) and len(data["cuped"]) == len(data["table"])
    assert {"p_value", "p_holm", "delta_lower", "delta_upper"} <= set(data["extended"][0])
    json.dumps(data, allow_nan=False)


def test_arm_summary_means_equal_the_table_means(report: AnalysisReport) -> None:
    control = next(a for a in report.arms if a.arm == "C")
    row = next(r for r in report.rows if r.metric == "mean_time_per_session")
    assert control.mean_time_per_session == pytest.approx(row.control_mean)


def test_metric_filter_limits_the_table(tmp_path: Path) -> None:
    log = load_log(write_jsonl(original_log(seed=22), tmp_path / "data.json"), EXPERIMENT)
    report = analyze(log, metrics=["mean_time_per_session"])
    assert {r.metric for r in report.rows} == {"mean_time_per_session"}
    with pytest.raises(AnalysisInputError, match="unknown metric"):
        analyze(log, metrics=["dwell"])


def test_nan_cells_become_null_in_json(tmp_path: Path) -> None:
    rows = [
        {"message": m, "timestamp": i, "user": u, "time": 1.0, "latency": 0.001,
         "experiments": {EXPERIMENT: arm}}
        for i, (u, arm, m) in enumerate(
            [(1, "C", "last"), (2, "C", "last"), (3, "T1", "last")]  # one T1 user: no variance
        )
    ]  # fmt: skip
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    row = report.to_json()[0]
    assert row["upper"] is None and row["lower"] is None and row["significant"] is False
    assert row["effect"] == 0.0
