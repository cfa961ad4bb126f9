"""botify's Grafana dashboards, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboards.py        # writes deploy/grafana/dashboards/*.json

The JSON files are what Grafana provisions; a unit test checks they are what this file
builds, and an integration test runs every query against a real Prometheus scraping a live
stack. Every query uses the ``$datasource`` variable and ``$__rate_interval``.
"""

# ruff: noqa: E501 - a PromQL query reads best on one line.
from __future__ import annotations

import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
ARM = 'experiment="$experiment"'
# One series per arm, named by its recommender.
BY_ARM = "sum by (arm, recommender)"
# The routes the availability SLO counts: scrapes and probes would dilute it.
PROTOCOL = 'route=~"/next.*|/last.*|/track.*"'


def query(expr: str, legend: str = "") -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    return q.legend_format(legend) if legend else q


def series(
    title: str, unit: str, *queries: prometheus.Dataquery, span: int = 12
) -> timeseries.Panel:
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(span).height(8)
    for i, q in enumerate(queries):
        panel = panel.with_target(q.ref_id(chr(ord("A") + i)))
    return panel


def number(title: str, unit: str, q: prometheus.Dataquery, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(span)
        .height(4)
        .with_target(q.ref_id("A"))
    )


def base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["botify"])
        .refresh("10s")
        .time("now-30m", "now")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
    )


def p(quantile: float, metric: str, where: str = "", by: str = "") -> str:
    sel = f"{{{where}}}" if where else ""
    keys = f"le, {by}" if by else "le"
    return (
        f"histogram_quantile({quantile}, sum by ({keys}) "
        f"(rate({metric}_bucket{sel}[$__rate_interval])))"
    )


def overview() -> dashboard.Dashboard:
    return (
        base(
            "botify-overview",
            "botify / Overview",
            "RED per route, events in flight, lag, dead letters.",
        )
        .with_row(dashboard.Row("API"))
        .with_panel(
            series(
                "Requests per second by route",
                "reqps",
                query(
                    "sum by (route) (rate(botify_api_requests_total[$__rate_interval]))",
                    "{{route}}",
                ),
            )
        )
        .with_panel(
            series(
                "Errors per second by route and kind",
                "reqps",
                query(
                    "sum by (route, error) (rate(botify_api_errors_total[$__rate_interval]))",
                    "{{route}} {{error}}",
                ),
            )
        )
        .with_panel(
            series(
                "Latency p50 / p99 by route",
                "s",
                query(p(0.5, "botify_api_request_duration_seconds", by="route"), "p50 {{route}}"),
                query(p(0.99, "botify_api_request_duration_seconds", by="route"), "p99 {{route}}"),
            )
        )
        .with_panel(
            series(
                "Error ratio (5xx) of the protocol's routes (availability SLO: 99.9 %)",
                "percentunit",
                query(
                    f'sum(rate(botify_api_requests_total{{status=~"5..", {PROTOCOL}}}[$__rate_interval]))'
                    f" / clamp_min(sum(rate(botify_api_requests_total{{{PROTOCOL}}}[$__rate_interval])), 1e-9)",
                    "5xx ratio",
                ),
            )
        )
        .with_row(dashboard.Row("Pipeline"))
        .with_panel(
            series(
                "Events waiting in the API's producer buffer",
                "short",
                query("sum by (instance) (botify_api_pending_events)", "{{instance}}"),
                span=8,
            )
        )
        .with_panel(
            series(
                "Consumer lag per group",
                "short",
                query(
                    "sum by (group) (max by (group, topic, partition) (botify_kafka_consumer_lag_records))",
                    "{{group}}",
                ),
                span=8,
            )
        )
        .with_panel(
            series(
                "Dead letters and delivery failures per second",
                "short",
                query(
                    'sum(rate(botify_stream_events_total{outcome="dead_letter"}[$__rate_interval]))',
                    "dead-lettered",
                ),
                query(
                    "sum(rate(botify_api_event_delivery_failures_total[$__rate_interval]))",
                    "delivery failures",
                ),
                span=8,
            )
        )
    )


def experiment() -> dashboard.Dashboard:
    return (
        base(
            "botify-experiment",
            "botify / Experiment",
            "Every arm of an experiment, live, named by its recommender.",
        )
        .with_variable(
            dashboard.QueryVariable("experiment")
            .label("Experiment")
            .datasource(DATASOURCE)
            .query("label_values(botify_experiment_sessions_total, experiment)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_panel(
            series(
                "Mean time per session (pooled, per window)",
                "short",
                query(
                    f"{BY_ARM} (rate(botify_experiment_session_time_sum{{{ARM}}}[$__rate_interval]))"
                    f" / {BY_ARM} (rate(botify_experiment_session_time_count{{{ARM}}}[$__rate_interval]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Mean time per session (over the dashboard's time range)",
                "short",
                query(
                    # increase() rides over worker restarts, where raw counters start again.
                    f"{BY_ARM} (increase(botify_experiment_session_time_sum{{{ARM}}}[$__range]))"
                    f" / {BY_ARM} (increase(botify_experiment_session_time_count{{{ARM}}}[$__range]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Tracks per session",
                "short",
                query(
                    f"{BY_ARM} (rate(botify_experiment_session_tracks_sum{{{ARM}}}[$__rate_interval]))"
                    f" / {BY_ARM} (rate(botify_experiment_session_tracks_count{{{ARM}}}[$__rate_interval]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Traffic share (listens)",
                "percentunit",
                query(
                    f"{BY_ARM} (rate(botify_experiment_listens_total{{{ARM}}}[$__rate_interval]))"
                    f" / scalar(sum(rate(botify_experiment_listens_total{{{ARM}}}[$__rate_interval])))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Sessions ended per second",
                "short",
                query(
                    f"{BY_ARM} (rate(botify_experiment_sessions_total{{{ARM}}}[$__rate_interval]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Sessions ended (over the dashboard's time range)",
                "short",
                query(
                    f"{BY_ARM} (increase(botify_experiment_sessions_total{{{ARM}}}[$__range]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Recommendations per second",
                "short",
                query(
                    f"{BY_ARM} (rate(botify_experiment_recommendations_total{{{ARM}}}[$__rate_interval]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
        .with_panel(
            series(
                "Mean listen time per listen",
                "short",
                query(
                    f"{BY_ARM} (rate(botify_experiment_listen_time_total{{{ARM}}}[$__rate_interval]))"
                    f" / {BY_ARM} (rate(botify_experiment_listens_total{{{ARM}}}[$__rate_interval]))",
                    "{{arm}} {{recommender}}",
                ),
            )
        )
    )


def stream() -> dashboard.Dashboard:
    return (
        base(
            "botify-stream",
            "botify / Stream",
            "The stream workers: throughput, outcomes, batches, delay, lag.",
        )
        .with_panel(
            series(
                "Events per second by outcome",
                "short",
                query(
                    "sum by (outcome) (rate(botify_stream_events_total[$__rate_interval]))",
                    "{{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Retries per second by step, and fold fallbacks",
                "short",
                query(
                    "sum by (step) (rate(botify_stream_retries_total[$__rate_interval]))",
                    "{{step}}",
                ),
                query(
                    "sum(rate(botify_stream_fold_fallbacks_total[$__rate_interval]))",
                    "fold fallbacks (a bug)",
                ),
            )
        )
        .with_panel(
            series(
                "Event -> state delay p50 / p99",
                "s",
                query(p(0.5, "botify_stream_event_delay_seconds"), "p50"),
                query(p(0.99, "botify_stream_event_delay_seconds"), "p99"),
            )
        )
        .with_panel(
            series(
                "Batch size (mean) and duration p99",
                "short",
                query(
                    "sum(rate(botify_stream_batch_size_records_sum[$__rate_interval]))"
                    " / sum(rate(botify_stream_batch_size_records_count[$__rate_interval]))",
                    "mean records per batch",
                ),
                query(p(0.99, "botify_stream_batch_duration_seconds"), "p99 batch seconds"),
            )
        )
        .with_panel(
            series(
                "Consumer lag per partition",
                "short",
                query(
                    "max by (group, topic, partition) (botify_kafka_consumer_lag_records)",
                    "{{group}} {{topic}}[{{partition}}]",
                ),
            )
        )
        .with_panel(
            series(
                "Worker CPU and memory",
                "short",
                query(
                    'sum by (instance) (rate(process_cpu_seconds_total{job="botify-stream"}[$__rate_interval]))',
                    "cpu {{instance}}",
                ),
                query(
                    'sum by (instance) (process_resident_memory_bytes{job="botify-stream"}) / 2^20',
                    "RSS MiB {{instance}}",
                ),
            )
        )
    )


def trainer() -> dashboard.Dashboard:
    return (
        base(
            "botify-trainer",
            "botify / Trainer and models",
            "Versions served, freshness, promotions, holdout metrics.",
        )
        .with_panel(
            series(
                "Version served per API instance",
                "none",
                query(
                    "max by (instance, model) (botify_api_model_version)",
                    "{{model}} @ {{instance}}",
                ),
            )
        )
        .with_panel(
            series(
                "Live freshness: now - newest example of the served version",
                "s",
                query(
                    "time() - min by (model) (botify_api_model_data_end_timestamp_seconds > 0)",
                    "{{model}}",
                ),
            )
        )
        .with_panel(
            series(
                "Versions by outcome",
                "short",
                query(
                    "sum by (model, outcome) (increase(botify_trainer_versions_total[$__rate_interval]))",
                    "{{model}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            series(
                "Holdout metrics of the latest run",
                "short",
                query(
                    "max by (model, metric) (botify_trainer_holdout_metric)", "{{model}} {{metric}}"
                ),
            )
        )
        .with_panel(
            series(
                "Run duration p50 per model",
                "s",
                query(p(0.5, "botify_trainer_run_duration_seconds", by="model"), "{{model}}"),
            )
        )
        .with_panel(
            series(
                "Runs since the last promotion",
                "short",
                query("max by (model) (botify_trainer_runs_since_promotion)", "{{model}}"),
            )
        )
        .with_panel(number("Training rounds", "short", query("sum(botify_trainer_rounds_total)")))
        .with_panel(
            number("Example log rows", "short", query("sum(botify_trainer_example_log_rows)"))
        )
        .with_panel(
            number("Example log size", "bytes", query("sum(botify_trainer_example_log_bytes)"))
        )
        .with_panel(
            number(
                "Model reload failures",
                "short",
                query("sum(botify_api_model_reload_failures_total)"),
            )
        )
    )


DASHBOARDS = {"overview": overview, "experiment": experiment, "stream": stream, "trainer": trainer}


def render() -> dict[str, str]:
    """File name -> the dashboard's JSON, as Grafana provisions it."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {
        f"{name}.json": encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS.items()
    }


def main(out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (out / name).write_text(text)
        sys.stdout.write(f"{out / name}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
