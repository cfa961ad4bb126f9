"""Freshness on hand-built logs: which version learned each listen and when it was served."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from botify.analysis.freshness import Freshness, freshness, read_runs, served_versions

SCHEMA = {"timestamp": pl.Int64, "recommender": pl.Utf8, "model_version": pl.Int64}
ARMS = ["affinity"]


def events(*rows: tuple[int, str, int | None]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def run(model: str, version: int | None, last_ms: int | None, promoted: bool = True) -> dict:
    window = None if last_ms is None else {"first_ms": 0, "last_ms": last_ms, "examples": 10}
    return {"model": model, "version": version, "promoted": promoted, "window": window}


RUNS = [
    run("affinity", 1, 1000),
    run("affinity", 2, 2000),
    run("affinity", 3, 3000),  # never served: the API skipped it
    run("affinity", None, 3500, promoted=False),  # refused: not a version
    run("affinity", 4, 4000),
    run("contextual", 1, 500),  # another model
]

# Listens; the affinity arm's answers carry the version that served them.
LOG = events(
    (900, "random", None),  # learned by v1 (window ends at 1000), served at 1500: 0.6 s
    (1000, "random", None),  # at v1's window end: v1 learned it, 0.5 s
    (1500, "affinity", 1),  # v1's first answer; learned by v2, served at 2600: 1.1 s
    (1700, "affinity", 1),  # learned by v2: 0.9 s
    (2600, "affinity", 2),  # v2's first answer; v3 was never served: v4's, at 4500: 1.9 s
    (3100, "contextual", 3),  # another model's version 3 does not serve affinity v3; 1.4 s
    (4500, "affinity", 4),  # v4's first answer; after every window: unlearned
    (5000, "random", None),  # unlearned
)


def test_served_versions_are_the_promoted_ones_some_arm_of_the_model_served() -> None:
    served = served_versions(LOG, "affinity", ARMS, RUNS)
    assert served.rows() == [(1, 1000, 1500), (2, 2000, 2600), (4, 4000, 4500)]


def test_a_listen_is_learned_by_the_first_served_version_whose_window_reaches_it() -> None:
    got = freshness(LOG, "affinity", ARMS, RUNS)
    assert (got.model, got.versions, got.listens, got.unlearned) == ("affinity", 3, 6, 2)
    # Delays: 0.5, 0.6, 0.9, 1.1, 1.4, 1.9 s (quantiles are the nearest value).
    assert got.p50_s in (0.9, 1.1) and got.p95_s == 1.9 and got.max_s == 1.9


def test_since_ms_keeps_only_later_listens_but_every_version() -> None:
    got = freshness(LOG, "affinity", ARMS, RUNS, since_ms=2000)
    assert (got.versions, got.listens, got.unlearned) == (3, 2, 2)
    # Delays: 1.4 and 1.9 s (the quantile is the nearest value, not an interpolation).
    assert got.p50_s in (1.4, 1.9) and got.max_s == 1.9


def test_the_recommenders_given_decide_whose_answers_count_as_serving() -> None:
    # Counting the contextual arm's answers, version 3 was "served" at 3100.
    got = freshness(LOG, "affinity", ["affinity", "contextual"], RUNS)
    assert (got.versions, got.listens, got.unlearned) == (4, 6, 2)
    # The 2600 listen is learned by v3 and served at 3100 (0.5 s, not 1.9 s).
    assert got.max_s == 1.4


def test_listens_after_the_last_window_are_unlearned() -> None:
    log = events((5000, "affinity", 1), (6000, "random", None))
    got = freshness(log, "affinity", ARMS, [run("affinity", 1, 1000)])
    assert got == Freshness("affinity", 1, 0, 2, None, None, None)


@pytest.mark.parametrize(
    ("log", "runs", "expected"),
    [
        (events(), RUNS, Freshness("affinity", 0, 0, 0, None, None, None)),
        (LOG, [], Freshness("affinity", 0, 0, len(LOG), None, None, None)),
        # Versions exist but none was served: every listen counts as unlearned.
        (events((900, "random", None)), RUNS, Freshness("affinity", 0, 0, 1, None, None, None)),
    ],
    ids=["no events", "no runs", "nothing served"],
)
def test_empty_inputs_give_empty_freshness(
    log: pl.DataFrame, runs: list[dict], expected: Freshness
) -> None:
    assert freshness(log, "affinity", ARMS, runs) == expected


def test_to_dict_has_every_field() -> None:
    got = freshness(LOG, "affinity", ARMS, RUNS).to_dict()
    assert set(got) == {"model", "versions", "listens", "unlearned", "p50_s", "p95_s", "max_s"}
    json.dumps(got)


def test_read_runs_reads_json_lines_and_an_absent_file_is_no_runs(tmp_path: Path) -> None:
    assert read_runs(tmp_path) == []
    (tmp_path / "runs.jsonl").write_text(json.dumps(RUNS[0]) + "\n\n" + json.dumps(RUNS[1]) + "\n")
    assert read_runs(tmp_path) == RUNS[:2]
