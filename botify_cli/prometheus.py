"""A real Prometheus next to the embedded stack (``botify up --prometheus``, ``botify demo
--prometheus``).

``botify up`` always writes ``prometheus/targets.json`` in its run directory: a file_sd list
of every process it started, with a ``job`` per service and a ``service`` label per child.
With ``--prometheus`` it also writes a config that scrapes that file and loads botify's
alert rules, and starts the ``prometheus`` binary from PATH on a free loopback port.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import httpx

from botify.errors import BackendUnavailableError, ConfigError
from botify.settings import PACKAGE_DIR
from botify_cli.processes import HTTPChild, http_child

ALERT_RULES = PACKAGE_DIR / "data" / "prometheus-alerts.yml"
INSTALL_HINT = "install it with `apt-get install prometheus` (Debian/Ubuntu) or from prometheus.io"


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One process's ``/metrics``: its job (api, stream, trainer) and its own name."""

    job: str
    service: str
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise ConfigError(f"prometheus is not on PATH: {INSTALL_HINT}")
    return found


def write_targets(path: Path, targets: list[ScrapeTarget]) -> Path:
    """The file_sd list; Prometheus re-reads it when it changes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = [
        {"targets": [t.address], "labels": {"job": f"botify-{t.job}", "service": t.service}}
        for t in targets
    ]
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(doc, indent=2))
    temp.replace(path)  # never a half-written file for Prometheus to read
    return path


def write_config(
    directory: Path, targets: Path, scrape_interval_s: float, api_key: str | None = None
) -> Path:
    """A Prometheus config (JSON is valid YAML) scraping ``targets`` with botify's rules;
    with ``api_key``, the API's targets are scraped with it (their /metrics needs it)."""
    interval = f"{max(1, round(scrape_interval_s))}s"
    every = {"files": [str(targets)], "refresh_interval": "5s"}
    jobs: list[dict[str, object]] = [{"job_name": "botify", "file_sd_configs": [every]}]
    if api_key is not None:
        key_file = directory / "api_key"
        key_file.touch(mode=0o600)
        key_file.write_text(api_key)
        # Every API instance's target is labelled job="botify-api" (service: api, api-1..).
        only_api = {"source_labels": ["job"], "regex": "botify-api"}
        jobs = [
            {**jobs[0], "relabel_configs": [{**only_api, "action": "drop"}]},
            {
                "job_name": "botify-api",
                "file_sd_configs": [every],
                "relabel_configs": [{**only_api, "action": "keep"}],
                "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
            },
        ]
    doc = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": jobs,
    }
    path = directory / "prometheus.yml"
    path.write_text(json.dumps(doc, indent=2))
    return path


def prometheus_process(
    port: int, config: Path, data_dir: Path, log_dir: Path, timeout: float = 60
) -> HTTPChild:
    """The server, ready when ``/-/ready`` answers; its data lives in ``data_dir``."""
    command = [
        prometheus_binary(),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    return http_child(command, f"http://127.0.0.1:{port}/-/ready", log_dir, "prometheus", timeout)


class Series(TypedDict, total=False):
    """One series of a query's answer: its labels, and its sample (an instant query) or its
    samples (a range query) as ``[unix time, "value"]``."""

    metric: dict[str, str]
    value: tuple[float, str]
    values: list[tuple[float, str]]


class PrometheusQuery:
    """The HTTP API's instant and range queries, as plain values."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self._client = httpx.Client(base_url=url, timeout=timeout)

    def _get(self, path: str, params: dict[str, str | float]) -> list[Series]:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"prometheus: {exc}") from None
        body = response.json()
        if body.get("status") != "success":
            raise BackendUnavailableError(f"prometheus: {body.get('error', response.text)}")
        return list(body["data"]["result"])

    def instant(self, expr: str, at: float | None = None) -> list[Series]:
        """Each series of ``expr`` now (or at Unix time ``at``):
        ``{"metric": labels, "value": [t, "v"]}``."""
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        return self._get("/api/v1/query", params)

    def scraped_all(self, expected: int) -> bool:
        """Whether ``expected`` targets are discovered and each was scraped at least once
        (Prometheus reads a file_sd list a few seconds after it reports ready)."""
        try:
            response = self._client.get("/api/v1/targets", params={"state": "active"})
            targets = response.json()["data"]["activeTargets"]
        except (httpx.HTTPError, KeyError, ValueError):
            return False
        scraped = [t for t in targets if t.get("health") in ("up", "down")]
        return len(scraped) >= expected

    def wait_scraped(self, expected: int, timeout: float = 30.0) -> None:
        """Until ``scraped_all``; ``BackendUnavailableError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.scraped_all(expected):
            if time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"prometheus did not scrape its {expected} targets within {timeout:.0f} s"
                )
            time.sleep(0.2)

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Each series of ``expr`` over [start, end]: ``{"metric", "values": [[t, "v"]...]}``."""
        params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
        return self._get("/api/v1/query_range", params)

    def close(self) -> None:
        self._client.close()


def arm_timeline(
    prom: PrometheusQuery, experiment: str, start: float, end: float, points: int = 120
) -> dict[str, list[tuple[float, float]]]:
    """Each arm's pooled mean time per session over a sliding window, from ``start`` to
    ``end``: ``"<arm> <recommender>" -> [(t, mean)]`` (NaN where the window ended no session)."""
    step = max(1.0, (end - start) / points)
    window = f"{max(15, round(4 * step))}s"
    sel = f'{{experiment="{experiment}"}}'
    by = "sum by (arm, recommender)"
    expr = (
        f"{by} (increase(botify_experiment_session_time_sum{sel}[{window}]))"
        f" / {by} (increase(botify_experiment_session_time_count{sel}[{window}]))"
    )
    out: dict[str, list[tuple[float, float]]] = {}
    for series in sorted(
        prom.range(expr, start, end, step),
        key=lambda s: str(s["metric"].get("arm")),
    ):
        labels = series["metric"]
        name = f"{labels.get('arm', '?')} {labels.get('recommender', '?')}"
        out[name] = [(float(t), float(v)) for t, v in series["values"]]
    return out
