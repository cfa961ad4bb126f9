"""Reading logs: JSON lines and Parquet, experiment names anywhere in the file, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from botify.analysis import AnalysisInputError, load_log


def row(user: int, ts: int, experiments: dict[str, str], message: str = "next") -> dict:
    return {
        "message": message,
        "timestamp": ts,
        "user": user,
        "track": 1,
        "time": 1,  # an int, as some logs write it
        "latency": 0.0005,
        "recommendation": None if message == "last" else 2,
        "experiments": experiments,
    }


def write(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_experiment_that_appears_only_late_in_the_file_is_found(tmp_path: Path) -> None:
    rows = [row(u, u, {"AA": "C"}) for u in range(5000)]
    rows += [row(9, 10_000, {"AA": "C", "LATE.v2": "T1"}, "last")]
    log = load_log(write(rows, tmp_path / "data.json"), "LATE.v2")
    assert log.frame.rows() == [("last", 10_000, 9, 1.0, 0.0005, "T1")]
    assert log.excluded_rows == 5000


def test_unknown_experiment_names_every_experiment_in_the_file(tmp_path: Path) -> None:
    rows = [row(1, 1, {"AA": "C"}), row(2, 2, {"ZZ": "T1"})]
    with pytest.raises(AnalysisInputError, match=r"no experiment 'NOPE' \(found: AA, ZZ\)"):
        load_log(write(rows, tmp_path / "data.json"), "NOPE")


def test_parquet_with_json_experiments_and_a_dotted_name(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "message": ["next", "last"],
            "timestamp": [1, 2],
            "user": [5, 5],
            "time": [1.0, 0.5],
            "latency": [0.001, 0.002],
            "experiments": ['{"AA.v2":"T3"}', '{"AA.v2":"T3","B":"C"}'],
        }
    )
    frame.write_parquet(tmp_path / "x.parquet")
    log = load_log(tmp_path / "x.parquet", "AA.v2")
    assert log.source == "parquet" and log.frame["arm"].to_list() == ["T3", "T3"]
    with pytest.raises(AnalysisInputError, match=r"found: AA.v2, B"):
        load_log(tmp_path / "x.parquet", "C")


def test_parquet_without_needed_columns_is_refused(tmp_path: Path) -> None:
    pl.DataFrame({"user": [1], "experiments": ['{"A":"C"}']}).write_parquet(tmp_path / "y.pq")
    with pytest.raises(AnalysisInputError, match="missing column"):
        load_log(tmp_path / "y.pq", "A")


def test_rows_missing_a_required_field_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [row(1, 1, {"A": "C"}), row(2, 2, {"A": "C"})]
    del rows[0]["timestamp"]
    log = load_log(write(rows, tmp_path / "data.json"), "A")
    assert (log.frame["user"].to_list(), log.bad_rows) == ([2], 1)


@pytest.mark.parametrize("stamp", [2**63, 2**64, 253_402_300_800_000, -1])
def test_a_timestamp_out_of_the_schema_bounds_is_skipped_and_counted(
    tmp_path: Path, stamp: int
) -> None:
    rows = [row(1, 1, {"A": "C"}), row(2, stamp, {"A": "C"}), row(3, 3, {"A": "T1"})]
    path = tmp_path / "data.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    log = load_log(path, "A")
    assert (log.frame["user"].to_list(), log.bad_rows, log.excluded_rows) == ([1, 3], 2, 0)


def test_out_of_bounds_values_in_parquet_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [row(u, u, {"A": "C"}) for u in range(4)]
    rows[1]["time"], rows[2]["latency"] = 1.5, -1.0
    frame = pl.DataFrame(rows).with_columns(pl.col("experiments").map_elements(json.dumps))
    frame.write_parquet(tmp_path / "x.parquet")
    log = load_log(tmp_path / "x.parquet", "A")
    assert (log.frame["user"].to_list(), log.bad_rows) == ([0, 3], 2)
