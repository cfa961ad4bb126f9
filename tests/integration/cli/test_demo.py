"""``botify demo`` end to end on a small world: paced traffic, rounds by data, the oracle and
the learning report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botify.settings import DemoSettings, Settings
from botify_cli.demo import run_demo, write_results
from tests.unit.sim.worlds import small_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# Sessions a second: on the recalibrated world these sessions average 14 tracks (affinity's
# run long), and the trainer shares the two cores: 40/s fell behind on a busy machine.
RATE = 20.0


def test_a_paced_demo_holds_its_rate_trains_by_data_and_reports_learning(
    tmp_path: Path,
) -> None:
    settings = Settings(
        run_dir=tmp_path,
        demo=DemoSettings(train_every_examples=1_000, oracle_sessions=100, curve_window=20),
    )
    (tmp_path / "demo").mkdir()
    steps: list[str] = []
    result = run_demo(
        settings,
        small_config(),
        tmp_path / "demo",
        episodes=300,
        processes=2,
        say=steps.append,
        on_progress=lambda n: None,
        warmup=500,
        arms={"C": "random", "T1": "affinity", "T2": "sticky_artist"},
        rate=RATE,
    )
    assert result.warmup is not None and result.warmup.rate == result.drive.rate == RATE
    assert result.drive.sessions == 300 and not result.drive.behind
    assert result.drive.achieved_rate == pytest.approx(RATE, rel=0.05)
    # Rounds came from data: each after at least the configured examples.
    runs = result.training_runs
    assert runs and {r["model"] for r in runs} == {"affinity"}  # only what the arms serve
    assert all(r["new_examples"] >= 1_000 for r in runs)
    assert result.oracle is not None and result.oracle.sessions == 100
    x_random, of_oracle = result.ratios("T2")
    assert x_random is not None and x_random > 1 and of_oracle is not None and of_oracle < 1
    doc = json.loads(write_results(result, tmp_path / "results.json").read_text())
    assert doc["traffic"]["target_rate"] == RATE and doc["training"]["kept_up"]
    assert set(doc["learning"]["curves"]) == {"random", "affinity", "sticky_artist"}
    assert doc["learning"]["measured_from_s"] > 0
    assert {a["recommender"]: a["share_of_oracle"] is not None for a in doc["arms"]} == {
        "random": True,
        "affinity": True,
        "sticky_artist": True,
    }
    html = result.report.read_text()
    assert "Learning over the run" in html and "T1 affinity" in html and "oracle" in html
    # Each arm named once: "<arm> <recommender>", never the arm again in brackets.
    assert "T1 affinity (T1)" not in html and "C random (C)" not in html
