"""Observability against a real Prometheus (Debian's ``prometheus``): a running stack with
every service, a scripted traffic pattern, then every dashboard query, every alert rule and
the values, checked through Prometheus's HTTP API against what the traffic did and what
``botify analyze`` computes from the exported events.

The traffic: known sessions per arm, four bad requests, one record dead-lettered, and enough
listens for the trainer to publish one version of ``contextual``, which one arm serves.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import polars as pl
import pytest
import redis
import yaml
from confluent_kafka import Producer

from botify import keys
from botify.analysis.load import load_log
from botify.analysis.report import analyze_file
from botify.analysis.sessions import build_sessions
from botify.catalog import generate_catalog, write_catalog
from botify.experiments import ExperimentPlan, load_experiments
from botify.listen_export import export_parquet
from botify.settings import KafkaSettings, Settings
from botify_cli.prometheus import ALERT_RULES, PrometheusQuery, arm_timeline
from botify_cli.stack import EmbeddedStack
from tests.unit.test_deploy import dashboard_exprs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("promtool") is None,
        reason="needs Debian's prometheus package (make test installs it)",
    ),
]

EXPERIMENT = "RECOMMENDERS"
EXPERIMENTS = f"""
[[experiment]]
name = "AA"
groups = 2

[[experiment]]
name = "{EXPERIMENT}"
groups = 3
arms = {{ C = "random", T1 = "sticky_artist", T2 = "contextual" }}
"""
USERS = range(1, 91)
SESSIONS_PER_USER = 2
BAD_REQUESTS = {"malformed_json": 2, "unknown_track": 1, "invalid_request": 1}
DEADLINE_S = 90.0


@dataclass
class Observed:
    stack: EmbeddedStack
    prom: PrometheusQuery
    run_dir: Path
    sessions: Counter[str]  # arm of EXPERIMENT -> sessions the traffic ended
    export: Path  # the events topic as Parquet
    api_metrics: str  # the API's /metrics, read before it stopped
    at: float  # every value is in Prometheus by then, and the API still up
    version: int  # of contextual, served then
    started: float  # when the traffic began

    def scalar(self, expr: str) -> float:
        return scalar(self.prom, expr, self.at)

    def by_label(self, expr: str, label: str) -> dict[str, float]:
        return by_label(self.prom, expr, label, self.at)


def wait_for(what: str, check: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def scalar(prom: PrometheusQuery, expr: str, at: float | None = None) -> float:
    result = prom.instant(expr, at)
    return float(result[0]["value"][1]) if result else math.nan  # type: ignore[index]


def by_label(prom: PrometheusQuery, expr: str, label: str, at: float) -> dict[str, float]:
    return {
        r["metric"][label]: float(r["value"][1])  # type: ignore[index]
        for r in prom.instant(expr, at)
    }


def drive(api: str, plan: ExperimentPlan, tracks: list[int], seed: int = 7) -> Counter[str]:
    """Two sessions for each user, each a few /next and one /last; returns the sessions
    ended per arm of EXPERIMENT."""
    rng = random.Random(seed)
    ended: Counter[str] = Counter()
    with httpx.Client(base_url=api, timeout=10) as client:
        for user in USERS:
            for _ in range(SESSIONS_PER_USER):
                track = rng.choice(tracks)
                for _ in range(rng.randint(2, 6)):
                    body = {"track": track, "time": round(rng.random(), 3)}
                    resp = client.post(f"/next/{user}", json=body)
                    assert resp.status_code == 200, resp.text
                    track = resp.json()["track"]
                body = {"track": track, "time": round(rng.random(), 3)}
                assert client.post(f"/last/{user}", json=body).status_code == 200
                ended[plan.assign(user).arms[EXPERIMENT]] += 1
    return ended


def bad_requests(api: str, track: int) -> None:
    with httpx.Client(base_url=api, timeout=10) as client:
        for _ in range(BAD_REQUESTS["malformed_json"]):
            assert client.post("/next/5", content=b"{nope").status_code == 400
        assert client.post("/next/5", json={"track": 10**9, "time": 0.5}).status_code == 404
        assert client.post("/next/5", json={"track": track, "time": 7}).status_code == 422


def dead_letter_one(broker: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": broker})
    producer.produce(topic, key=b"77", value=b'{"not": "an event"}')
    assert producer.flush(10) == 0


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    run_dir = tmp_path_factory.mktemp("observability")
    catalog = generate_catalog(500, 50, seed=3)
    write_catalog(catalog.tracks, run_dir / "catalog.jsonl")
    (run_dir / "experiments.toml").write_text(EXPERIMENTS)
    plan = load_experiments(run_dir / "experiments.toml")
    env = {
        "BOTIFY_RUN_DIR": str(run_dir),
        "BOTIFY_CATALOG__PATH": str(run_dir / "catalog.jsonl"),
        "BOTIFY_EXPERIMENTS__PATH": str(run_dir / "experiments.toml"),
        "BOTIFY_TRAINER__MODELS": json.dumps(["contextual"]),
        "BOTIFY_TRAINER__EVERY_S": "1",
        "BOTIFY_TRAINER__MIN_EXAMPLES": "100",
        "BOTIFY_TRAINER__DEVICE": "cpu",
        "BOTIFY_TRAINER__TRAIN_BUDGET_S": "1",
        "BOTIFY_TRAINER__EXPORT_BUDGET_S": "1",
        "BOTIFY_TRAINER__TOP_K": "20",
        "BOTIFY_MODELS__POLL_S": "0.5",
        "BOTIFY_METRICS__LAG_INTERVAL_S": "1",
    }
    settings = Settings()
    stack = EmbeddedStack(
        settings,
        run_dir / "logs",
        trainer=True,
        extra_env=env,
        prometheus=True,
        scrape_interval_s=1,
    )
    with stack:
        endpoints = stack.endpoints
        assert endpoints is not None and endpoints.prometheus is not None
        prom = PrometheusQuery(endpoints.prometheus)
        try:
            # Every target scraped once before any traffic: the zeros are in the TSDB, so
            # the first errors are a step that increase() sees.
            wait_for(
                "every target up",
                lambda: len(prom.instant("up == 1")) == len(endpoints.metrics),
                timeout=30,
            )
            started = time.time()
            bad_requests(endpoints.api, catalog.tracks[0].track)
            sessions = drive(endpoints.api, plan, [t.track for t in catalog.tracks])
            dead_letter_one(endpoints.broker, settings.kafka.listens_topic)
            r = redis.Redis.from_url(endpoints.redis)
            wait_for(
                "a published contextual version",
                lambda: r.get(keys.model_current("contextual")) is not None,
            )

            def served() -> int:
                return int(r.get(keys.model_current("contextual")))  # type: ignore[arg-type]

            wait_for(
                "every session, the dead letter and the version in Prometheus",
                lambda: (
                    scalar(
                        prom, f'sum(botify_experiment_sessions_total{{experiment="{EXPERIMENT}"}})'
                    )
                    == sum(sessions.values())
                    and scalar(prom, 'sum(botify_stream_events_total{outcome="dead_letter"})') == 1
                    and scalar(prom, 'max(botify_api_model_version{model="contextual"})')
                    == served()
                    and scalar(prom, "sum(botify_api_errors_total)") == sum(BAD_REQUESTS.values())
                    # The trainer reports a run after publishing it: wait for that scrape too.
                    and scalar(prom, 'sum(botify_trainer_versions_total{outcome="promoted"})') >= 1
                    and scalar(prom, "count(botify_trainer_holdout_metric)") > 0
                ),
            )
            # The API's series go stale once it stops: the tests query this moment.
            at, version = time.time(), served()
            api_metrics = httpx.get(f"{endpoints.api}/metrics", timeout=10).text
            # Stopping the API flushes its producer: the export sees every answered request.
            stack.stop_service("api")
            kafka = KafkaSettings(
                **{**settings.kafka.model_dump(), "bootstrap_servers": endpoints.broker}
            )
            exported = export_parquet(kafka, run_dir / "events.parquet")
            yield Observed(
                stack, prom, run_dir, sessions, exported.path, api_metrics, at, version, started
            )
        finally:
            prom.close()


def test_sessions_per_arm_equal_the_traffic_and_the_analysis_of_the_export(
    observed: Observed,
) -> None:
    got = observed.by_label(
        f'sum by (arm) (botify_experiment_sessions_total{{experiment="{EXPERIMENT}"}})',
        "arm",
    )
    analysis = analyze_file(observed.export, EXPERIMENT)
    assert got == {a.arm: float(a.sessions) for a in analysis.arms}
    assert got == {arm: float(n) for arm, n in observed.sessions.items()}


def test_each_arms_pooled_time_per_session_equals_the_exported_events(observed: Observed) -> None:
    sel = f'{{experiment="{EXPERIMENT}"}}'
    got = observed.by_label(
        f"sum by (arm) (botify_experiment_session_time_sum{sel})"
        f" / sum by (arm) (botify_experiment_session_time_count{sel})",
        "arm",
    )
    sessions = (
        build_sessions(load_log(observed.export, EXPERIMENT).frame)
        .group_by("arm")
        .agg(pl.col("time").sum() / pl.len())
    )
    want = dict(zip(sessions["arm"].to_list(), sessions["time"].to_list(), strict=True))
    assert got.keys() == want.keys()
    for arm in want:
        assert got[arm] == pytest.approx(want[arm], rel=1e-9)


def test_every_arm_is_labelled_by_its_recommender(observed: Observed) -> None:
    got = observed.by_label(
        f'sum by (arm, recommender) (botify_experiment_sessions_total{{experiment="{EXPERIMENT}"}}) > 0',
        "recommender",
    )
    assert set(got) == {"random", "sticky_artist", "contextual"}


def test_errors_are_counted_from_the_first_one(observed: Observed) -> None:
    for kind, n in BAD_REQUESTS.items():
        assert observed.scalar(f'sum(botify_api_errors_total{{error="{kind}"}})') == n
        # The series existed at 0 before the first error, so the step is visible.
        assert observed.scalar(f'sum(increase(botify_api_errors_total{{error="{kind}"}}[10m]))') > 0


def test_one_dead_letter_and_the_served_model_version(observed: Observed) -> None:
    assert observed.scalar('sum(botify_stream_events_total{outcome="dead_letter"})') == 1
    served = observed.scalar('max(botify_api_model_version{model="contextual"})')
    assert served == observed.version >= 1
    assert observed.scalar('sum(botify_trainer_versions_total{outcome="promoted"})') >= 1
    end = observed.scalar('max(botify_api_model_data_end_timestamp_seconds{model="contextual"})')
    assert 0 < observed.at - end < 600


def test_the_demo_timeline_has_every_arm_from_the_first_sessions(observed: Observed) -> None:
    timeline = arm_timeline(observed.prom, EXPERIMENT, observed.started - 5, observed.at)
    assert set(timeline) == {"C random", "T1 sticky_artist", "T2 contextual"}
    for series in timeline.values():
        assert any(math.isfinite(v) and v > 0 for _, v in series)


def test_every_dashboard_query_returns_data(observed: Observed) -> None:
    empty = []
    for expr in dashboard_exprs():
        q = expr.replace("$__rate_interval", "10m").replace("$__range", "10m")
        q = q.replace("$experiment", EXPERIMENT)
        values = [float(r["value"][1]) for r in observed.prom.instant(q, observed.at)]
        if not any(math.isfinite(v) for v in values):
            empty.append(q)
    assert not empty, empty


def test_every_alert_rule_evaluates(observed: Observed) -> None:
    rules = [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]
    assert rules
    for rule in rules:
        observed.prom.instant(rule["expr"])  # raises on an error
    loaded = httpx.get(f"{observed.stack.endpoints.prometheus}/api/v1/rules", timeout=10).json()  # type: ignore[union-attr]
    health = {r["name"]: r["health"] for g in loaded["data"]["groups"] for r in g["rules"]}
    assert set(health) == {r["alert"] for r in rules}
    assert all(h in ("ok", "unknown") for h in health.values()), health
    # This traffic dead-lettered a record: that alert fires (or is pending).
    alerts = httpx.get(f"{observed.stack.endpoints.prometheus}/api/v1/alerts", timeout=10).json()  # type: ignore[union-attr]
    assert "BotifyDeadLetters" in {a["labels"]["alertname"] for a in alerts["data"]["alerts"]}


def test_promtool_accepts_the_rules_and_every_process_metrics(observed: Observed) -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERT_RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert observed.stack.endpoints is not None
    for target in observed.stack.endpoints.metrics:
        # The API stopped before the export: its page was read just before.
        text = observed.api_metrics if target.job == "api" else httpx.get(target.url).text
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert lint.returncode == 0, (target.service, lint.stdout + lint.stderr)
        assert re.search(r"^process_resident_memory_bytes ", text, re.M), target.service
