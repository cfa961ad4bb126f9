"""The Prometheus launcher's files and queries, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from botify.errors import ConfigError
from botify_cli import prometheus
from botify_cli.prometheus import (
    ALERT_RULES,
    ScrapeTarget,
    arm_timeline,
    prometheus_binary,
    write_config,
    write_targets,
)


def test_targets_name_a_job_per_service_and_each_process(tmp_path: Path) -> None:
    path = write_targets(
        tmp_path / "p" / "targets.json",
        [
            ScrapeTarget("api", "api", "127.0.0.1:1"),
            ScrapeTarget("stream", "stream-2", "127.0.0.1:2"),
        ],
    )
    doc = json.loads(path.read_text())
    assert doc == [
        {"targets": ["127.0.0.1:1"], "labels": {"job": "botify-api", "service": "api"}},
        {"targets": ["127.0.0.1:2"], "labels": {"job": "botify-stream", "service": "stream-2"}},
    ]


def test_config_scrapes_the_targets_file_and_loads_the_packaged_rules(tmp_path: Path) -> None:
    config = yaml.safe_load(write_config(tmp_path, tmp_path / "targets.json", 0.4).read_text())
    assert config["global"]["scrape_interval"] == "1s"
    assert config["rule_files"] == [str(ALERT_RULES)] and ALERT_RULES.is_file()
    sd = config["scrape_configs"][0]["file_sd_configs"][0]
    assert sd["files"] == [str(tmp_path / "targets.json")]


def test_no_binary_is_a_config_error_that_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prometheus.shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match="apt-get install prometheus"):
        prometheus_binary()


class FakeQuery:
    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float, float]] = []

    def range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, object]]:
        self.asked.append((expr, start, end, step))
        return [
            {
                "metric": {"arm": "T1", "recommender": "top_pop"},
                "values": [[10, "2.5"], [20, "NaN"]],
            },
            {"metric": {"arm": "C", "recommender": "random"}, "values": [[10, "2"]]},
        ]


def test_arm_timeline_names_series_by_arm_and_recommender_in_arm_order() -> None:
    fake = FakeQuery()
    got = arm_timeline(fake, "EXP", 0.0, 1200.0, points=120)  # type: ignore[arg-type]
    assert list(got) == ["C random", "T1 top_pop"]
    assert got["T1 top_pop"][0] == (10.0, 2.5)
    expr, _, _, step = fake.asked[0]
    assert step == 10.0 and 'experiment="EXP"' in expr and "[40s]" in expr
