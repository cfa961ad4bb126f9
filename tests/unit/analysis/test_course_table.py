"""The course table agrees, cell by cell, with an independent loop-and-scipy implementation."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from botify.analysis import COURSE_COLUMNS, analyze, load_log
from tests.unit.analysis.logs import EXPERIMENT, original_log, reference_table, write_jsonl


def assert_tables_agree(actual: list[dict], expected: list[dict]) -> None:
    key = lambda row: (row["treatment"], row["metric"])  # noqa: E731
    assert sorted(map(key, actual)) == sorted(map(key, expected))
    by_key = {key(row): row for row in actual}
    for want in expected:
        got = by_key[key(want)]
        for column in COURSE_COLUMNS:
            if isinstance(want[column], float):
                assert got[column] == pytest.approx(want[column], rel=1e-6, abs=1e-6), (
                    key(want),
                    column,
                )
            else:
                assert got[column] == want[column], (key(want), column)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_course_table_matches_an_independent_implementation(seed: int, tmp_path: Path) -> None:
    rows = original_log(seed=seed)
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    expected = reference_table(rows, EXPERIMENT)
    assert len(expected) == 2 * 5
    assert_tables_agree(report.to_json(), expected)


def test_a_lift_in_listen_time_shows_as_a_significant_positive_effect(tmp_path: Path) -> None:
    rows = original_log(seed=3, users=3000, lift=0.3)
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    row = next(
        r for r in report.rows if r.treatment == "T2" and r.metric == "mean_time_per_session"
    )
    assert row.effect > 0 and row.lower > 0 and row.significant


def test_another_control_arm_is_compared_against(tmp_path: Path) -> None:
    rows = original_log(seed=4)
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT), control="T1")
    assert {r.treatment for r in report.rows} == {"C", "T2"}
    assert_tables_agree(report.to_json(), reference_table(rows, EXPERIMENT, control="T1"))


def test_parquet_with_json_experiments_gives_the_same_report_as_jsonl(tmp_path: Path) -> None:
    rows = original_log(seed=5)
    jsonl = write_jsonl(rows, tmp_path / "data.json")
    frame = pl.read_ndjson(jsonl, infer_schema_length=None).with_columns(
        pl.col("experiments").struct.json_encode()
    )
    parquet = tmp_path / "listens.parquet"
    frame.write_parquet(parquet)
    from_parquet, from_jsonl = load_log(parquet, EXPERIMENT), load_log(jsonl, EXPERIMENT)
    assert from_parquet.source == "parquet" and from_jsonl.source == "jsonl"
    assert from_parquet.frame.equals(from_jsonl.frame)
    assert analyze(from_parquet).to_json() == analyze(from_jsonl).to_json()


def test_rows_without_the_experiment_are_excluded_and_counted(tmp_path: Path) -> None:
    rows = original_log(seed=6, unlabelled=11)
    log = load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT)
    assert log.excluded_rows == 11
    assert log.frame.height == len(rows) - 11
    report = analyze(log)
    assert report.rows_excluded == 11 and report.rows_used == len(rows) - 11


def test_users_without_a_finished_session_count_as_zero_time_but_no_ratio(
    tmp_path: Path,
) -> None:
    rows = original_log(seed=7)
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    extras = {(e.treatment, e.metric): e for e in report.extras}
    # Some users never finished a session: they are in `time` and `sessions`, not in ratios.
    assert extras[("T1", "time")].n_control > extras[("T1", "mean_time_per_session")].n_control
    assert not any(math.isnan(r.effect) for r in report.rows)
