"""The alert rules, unit-tested with ``promtool test rules``: each alert fires on the
series that should raise it, and stays quiet on an idle or healthy stack. Series carry the
job labels ``botify up`` and compose give (botify-api, botify-stream, botify-trainer)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from botify_cli.prometheus import ALERT_RULES
from tests.unit.test_deploy import exported_names

pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="needs Debian's prometheus package (promtool)"
)

API, STREAM, TRAINER = 'job="botify-api"', 'job="botify-stream"', 'job="botify-trainer"'


def case(name: str, series: dict[str, str], alert: str, at: str, fires: list[dict]) -> dict:  # type: ignore[type-arg]
    return {
        "name": name,
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": fires}],
    }


def fired(labels: dict[str, str], summary: str) -> dict:  # type: ignore[type-arg]
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


CASES = [
    case(
        "one of two API instances stopped answering",
        {f'up{{{API},instance="a"}}': "1 0x10", f'up{{{API},instance="b"}}': "1x10"},
        "BotifyApiDown",
        "5m",
        [
            fired(
                {"severity": "critical", "job": "botify-api", "instance": "a"},
                "API instance a does not answer scrapes",
            )
        ],
    ),
    case(
        "no API at all (compose drops a dead replica from DNS)",
        {f'up{{{STREAM},instance="s"}}': "1x10"},
        "BotifyApiDown",
        "5m",
        [fired({"severity": "critical"}, "No API instance answers scrapes")],
    ),
    case(
        "a healthy API",
        {f'up{{{API},instance="a"}}': "1x10"},
        "BotifyApiDown",
        "5m",
        [],
    ),
    case(
        "2 % of /next failing (the page threshold is 14 x the 0.1 % budget)",
        {
            f'botify_api_requests_total{{{API},route="/next/{{user}}",status="200"}}': "0+980x20",
            f'botify_api_requests_total{{{API},route="/next/{{user}}",status="503"}}': "0+20x20",
        },
        "BotifyApiAvailabilityBelowSlo",
        "15m",
        [fired({"severity": "critical"}, "2% of API requests fail with a 5xx")],
    ),
    case(
        "scrapes do not dilute the error ratio, nor make errors of a quiet API",
        {
            f'botify_api_requests_total{{{API},route="/metrics",status="200"}}': "0+1000x20",
            f'botify_api_requests_total{{{API},route="/next/{{user}}",status="200"}}': "0+1000x20",
        },
        "BotifyApiAvailabilityBelowSlo",
        "15m",
        [],
    ),
    case(
        "a dead-lettered record",
        {f'botify_stream_events_total{{{STREAM},outcome="dead_letter"}}': "0 0 1x10"},
        "BotifyDeadLetters",
        "5m",
        [fired({"severity": "warning"}, "1 listen records were dead-lettered in 10 minutes")],
    ),
    case(
        "lag that keeps growing",
        {
            f'botify_kafka_consumer_lag_records{{{STREAM},group="g",topic="t",partition="0"}}': "0+200x40"
        },
        "BotifyConsumerLagGrowing",
        "30m",
        [
            fired(
                {"severity": "warning", "group": "g"},
                "Consumer group g is 6000 records behind and falling further",
            )
        ],
    ),
    case(
        "a large lag that is being worked off",
        {
            f'botify_kafka_consumer_lag_records{{{STREAM},group="g",topic="t",partition="0"}}': "9000-200x40"
        },
        "BotifyConsumerLagGrowing",
        "30m",
        [],
    ),
    case(
        "nothing applied for half an hour",
        {f'botify_stream_events_total{{{STREAM},outcome="applied"}}': "5x40"},
        "BotifyNoEvents",
        "35m",
        [fired({"severity": "warning"}, "No listen event has been applied for 15 minutes")],
    ),
    case(
        "examples keep coming and no round ends",
        {
            f"botify_trainer_last_round_timestamp_seconds{{{TRAINER}}}": "60x40",
            f"botify_trainer_examples_read_total{{{TRAINER}}}": "0+100x40",
        },
        "BotifyTrainerStalled",
        "30m",
        [
            fired(
                {"severity": "warning", "job": "botify-trainer"},
                "No training round has ended for 29m 0s",
            )
        ],
    ),
    case(
        "an idle trainer is not stalled",
        {
            f"botify_trainer_last_round_timestamp_seconds{{{TRAINER}}}": "60x40",
            f"botify_trainer_examples_read_total{{{TRAINER}}}": "100x40",
        },
        "BotifyTrainerStalled",
        "30m",
        [],
    ),
    case(
        "ten runs with data and no promotion",
        {f'botify_trainer_runs_since_promotion{{{TRAINER},model="affinity"}}': "12x5"},
        "BotifyTrainerNotPromoting",
        "2m",
        [
            fired(
                {"severity": "warning", "model": "affinity"},
                "affinity: 12 runs with data and no promoted version",
            )
        ],
    ),
    case(
        "a few refusals are normal",
        {f'botify_trainer_runs_since_promotion{{{TRAINER},model="affinity"}}': "3x5"},
        "BotifyTrainerNotPromoting",
        "2m",
        [],
    ),
]


def test_each_alert_fires_on_its_signal_and_stays_quiet_otherwise(tmp_path: Path) -> None:
    spec = {"rule_files": [str(ALERT_RULES)], "evaluation_interval": "1m", "tests": CASES}
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_name_only_exported_metrics_and_the_jobs_botify_gives() -> None:
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    names = {n for r in rules for n in re.findall(r"\b((?:botify|process)_[a-z0-9_]+)", r["expr"])}
    assert names and names <= exported_names(), sorted(names - exported_names())
    jobs = {j for r in rules for j in re.findall(r'job="([^"]+)"', r["expr"])}
    assert jobs == {"botify-api", "botify-stream", "botify-trainer"}
    compose = (ALERT_RULES.parents[2] / "deploy/prometheus.yml").read_text()
    assert jobs <= set(re.findall(r"job_name: (\S+)", compose))
