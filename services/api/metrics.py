"""Prometheus metrics of one API process. Labels: route, recommender, arm, status, error
kind, model; never a user or a track. The children known at start are created at zero
(``precreate``), so the first error or the first reload shows up in ``rate()``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from botify.telemetry import precreate, process_registry

# Buckets tuned for a sub-millisecond handler with a tail into tens of milliseconds.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0)
# A model reload reads and indexes arrays off the request path: tens of ms to tens of s.
RELOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Every route and the (status, error kind) pairs it can answer with, for ``precreate``.
ROUTES = ("/", "/health", "/metrics", "/next/{user}", "/last/{user}", "/track/{track}")
RECOMMENDATION_ROUTES = ("/next/{user}", "/last/{user}")
ERRORS = (
    ("400", "malformed_json"),
    ("404", "unknown_track"),
    ("404", "not_found"),
    ("405", "method_not_allowed"),
    ("408", "request_timeout"),
    ("413", "body_too_large"),
    ("499", "client_disconnected"),
    ("422", "invalid_request"),
    ("503", "backend_unavailable"),
    ("503", "backend_timeout"),
    ("500", "internal_error"),
)


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=process_registry)
    # False: ``served`` counts nothing (only to measure what per-request metrics cost).
    per_request: bool = True

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "botify_api_requests_total", "Requests answered.", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "botify_api_errors_total",
            "Requests answered with an error.",
            ["route", "error"],
            registry=r,
        )
        self.latency = Histogram(
            "botify_api_request_duration_seconds",
            "Time spent in the handler.",
            ["route", "recommender"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "botify_api_recommendations_total",
            "Recommendations served.",
            ["recommender", "arm"],
            registry=r,
        )
        self.delivery_failures = Counter(
            "botify_api_event_delivery_failures_total",
            "Listen events the broker did not take.",
            ["reason"],
            registry=r,
        )
        self.pending_events = Gauge(
            "botify_api_pending_events", "Events waiting in the producer's buffer.", registry=r
        )
        self.pending_age = Gauge(
            "botify_api_oldest_pending_event_age_seconds",
            "How long the oldest event in the producer's buffer has waited.",
            registry=r,
        )
        self.model_version = Gauge(
            "botify_api_model_version",
            "Version of each model this process serves (0: none yet).",
            ["model"],
            registry=r,
        )
        self.model_reloads = Counter(
            "botify_api_model_reloads_total",
            "Model versions loaded and swapped in.",
            ["model"],
            registry=r,
        )
        self.model_reload_failures = Counter(
            "botify_api_model_reload_failures_total",
            "Model versions that failed to load; the previous version kept serving.",
            ["model"],
            registry=r,
        )
        self.model_data_end = Gauge(
            "botify_api_model_data_end_timestamp_seconds",
            "Newest training example of the version served (Unix time): time() - this is the "
            "live freshness.",
            ["model"],
            registry=r,
        )
        self.model_reload_duration = Histogram(
            "botify_api_model_reload_duration_seconds",
            "Time to load one model version, in a worker thread.",
            ["model"],
            buckets=RELOAD_BUCKETS,
            registry=r,
        )
        self._served: dict[tuple[str, str, str | None], tuple[Any, ...]] = {}
        precreate(self.requests, [(route, "200") for route in ROUTES])
        precreate(self.requests, [(route, status) for route in ROUTES for status, _ in ERRORS])
        precreate(self.errors, [(route, kind) for route in ROUTES for _, kind in ERRORS])
        precreate(self.delivery_failures, [("_MSG_TIMED_OUT",), ("_TRANSPORT",)])

    def arms(self, served: Iterable[tuple[str, str | None]]) -> None:
        """Create the children of each (recommender, arm) the experiments route to."""
        for recommender, arm in served:
            for route in RECOMMENDATION_ROUTES:
                self.latency.labels(route, recommender)
            # served() counts an arm-less recommendation under "-".
            self.recommendations.labels(recommender, arm or "-")

    def models(self, names: Iterable[str]) -> None:
        """Create the children of each model this process serves."""
        for metric in (
            self.model_version,
            self.model_reloads,
            self.model_reload_failures,
            self.model_reload_duration,
            self.model_data_end,
        ):
            precreate(metric, [(name,) for name in names])

    def served(self, route: str, recommender: str, arm: str | None, latency: float) -> None:
        """Count one successful answer. Label children are cached: looking them up costs
        more than observing."""
        if not self.per_request:
            return
        key = (route, recommender, arm)
        children = self._served.get(key)
        if children is None:
            children = (
                self.latency.labels(route, recommender),
                self.requests.labels(route, "200"),
                self.recommendations.labels(recommender, arm) if arm is not None else None,
            )
            self._served[key] = children
        children[0].observe(latency)
        children[1].inc()
        if children[2] is not None:
            children[2].inc()
