"""``create_app(settings)``: assembles the API. The lifespan opens the catalog, experiments,
recommenders, Redis store and Kafka publisher, and closes them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import disable_created_metrics

from botify.catalog import load_catalog
from botify.errors import ConfigError
from botify.events import EXPERIMENT_NAME
from botify.experiments import load_experiments
from botify.kafka import API, ListenPublisher, ensure_topics
from botify.models import check_serving, load_plugins
from botify.recommenders import RecommenderContext, build_recommender
from botify.recommenders.serving_index import serving_index
from botify.serving import Router
from botify.settings import KafkaSettings, Settings
from botify.storage import UserStateStore, open_user_state_store
from services.api.auth import install_api_keys
from services.api.deps import EventPublisher, Runtime
from services.api.errors import install_error_handlers
from services.api.limits import BodyLimits
from services.api.metrics import ApiMetrics
from services.api.model_watcher import ModelWatcher
from services.api.routes import health, next, tracks

logger = logging.getLogger(__name__)


def build_router(settings: Settings) -> tuple[Router, RecommenderContext]:
    """Catalog, experiments and one recommender per name the experiments use."""
    catalog = load_catalog(settings.catalog.path)
    plan = load_experiments(settings.experiments.path, settings.experiments.default_recommender)
    # /next builds its events from trusted fields: a name the event schema refuses must stop
    # the start, not fail every request.
    bad = [e.name for e in plan.experiments if not EXPERIMENT_NAME.fullmatch(e.name)]
    if bad:
        raise ConfigError(
            f"experiment names {bad} cannot be logged: use 1 to 64 letters, digits, '_', '.', '-'"
        )
    load_plugins(settings.models.plugins)
    check_serving(settings.recommender)
    context = RecommenderContext(catalog=catalog, seed=settings.recommender.seed)
    # Every serving parameter, plus the stream's fail threshold (the cascade counts fails).
    params: dict[str, object] = {
        **settings.recommender.model_dump(),
        "fail_threshold": settings.state.fail_threshold,
    }
    recommenders = {
        name: build_recommender(name, context, params) for name in plan.recommender_names()
    }
    return Router(catalog, plan, recommenders), context


async def _refresh_popularity(
    store: UserStateStore, context: RecommenderContext, k: int, every: float
) -> None:
    """Keeps TopPop's list fresh off the request path."""
    while True:
        try:
            context.popularity.top = tuple(await store.top_tracks(k))
        except Exception as exc:  # Redis blips must not kill the refresher
            logger.warning("popularity refresh failed: %s", exc)
        await asyncio.sleep(every)


def _open_store(settings: Settings) -> UserStateStore:
    return open_user_state_store(settings.redis, settings.redis.timeout_s)


def _open_publisher(settings: Settings, metrics: ApiMetrics) -> EventPublisher:
    return ListenPublisher(
        settings.kafka,
        API,
        on_failure=lambda reason: metrics.delivery_failures.labels(reason).inc(),
        acked=settings.api.durability == "acks",
        stall_s=settings.api.delivery_stall_s,
        failure_window_s=settings.api.failure_window_s,
    )


@dataclass(frozen=True)
class Backends:
    """What the lifespan opens outside the process: the topics, the user-state store and the
    event publisher. The defaults reach the configured Kafka and Redis; unit tests pass
    in-memory ones and run the rest of ``create_app``'s wiring unchanged."""

    ensure_topics: Callable[[KafkaSettings], None] = ensure_topics
    open_store: Callable[[Settings], UserStateStore] = _open_store
    open_publisher: Callable[[Settings, ApiMetrics], EventPublisher] = _open_publisher


def create_app(settings: Settings, backends: Backends = Backends()) -> FastAPI:
    """The API app; its lifespan opens ``backends`` and closes them in reverse."""
    # `_created` series double every metric's cardinality and no dashboard reads them.
    disable_created_metrics()
    # Config errors surface here, at start-up, not on the first request.
    router, context = build_router(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = ApiMetrics(per_request=settings.metrics.requests)
        metrics.arms(router.plan.serving_arms())
        await asyncio.to_thread(backends.ensure_topics, settings.kafka)
        store = backends.open_store(settings)
        publisher = backends.open_publisher(settings, metrics)
        app.state.metrics = metrics
        app.state.runtime = Runtime(settings, router, store, publisher, metrics)
        refresher = asyncio.create_task(
            _refresh_popularity(
                store,
                context,
                settings.recommender.top_pop_k,
                settings.recommender.top_pop_refresh_s,
            )
        )
        # Watches the slots the recommenders asked for; serves their current versions first.
        watcher = ModelWatcher.from_settings(
            settings,
            context.models,
            metrics,
            prepare=lambda artifact: serving_index(artifact, context.catalog),
        )
        app.state.model_watcher = watcher
        await watcher.start()
        try:
            yield
        finally:
            await watcher.stop()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await asyncio.to_thread(publisher.close)
            await store.close()

    # Swagger UI and ReDoc from assets the fastapi-offline package ships, not from a CDN:
    # /docs renders on a laptop offline and in a locked-down cluster alike.
    app = FastAPIOffline(
        title="botify",
        version="1.0",
        description="Recommendation API, wire-compatible with the original botify.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodyLimits,
        max_body_bytes=settings.api.max_body_bytes,
        body_timeout_s=settings.api.body_timeout_s,
    )
    # Outermost: a request without a key is refused before its body is read.
    install_api_keys(app, settings.api.api_keys)
    for module in (next, tracks, health):
        app.include_router(module.router)
    return app
