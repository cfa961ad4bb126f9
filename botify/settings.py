"""One settings object per process, read from ``BOTIFY_*`` environment variables.

Nested sections use ``__``: ``BOTIFY_KAFKA__BOOTSTRAP_SERVERS=host:9092``. Defaults run the
embedded stack. Build ``Settings()`` once in an entry point and pass it (or a section) down.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    listens_topic: str = "botify.listens.v1"
    partitions: int = Field(default=4, ge=1)
    # Tansu (and any broker) makes a group's first join wait ~half the session timeout.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    # Larger batches cost the broker and librdkafka less CPU; events are not latency-critical.
    linger_ms: int = Field(default=20, ge=0)
    produce_retries: int = Field(default=3, ge=0)
    flush_timeout_s: float = Field(default=5.0, gt=0)

    @property
    def dlq_topic(self) -> str:
        return f"{self.listens_topic}.dlq"


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"


class CatalogSettings(_Section):
    path: Path = PACKAGE_DIR / "data" / "catalog.sample.jsonl"


class ExperimentsSettings(_Section):
    path: Path = PACKAGE_DIR / "data" / "experiments.toml"
    # Serves users that no experiment with recommenders routes elsewhere.
    default_recommender: str = "random"


class RecommenderSettings(_Section):
    seed: int = 0
    top_pop_k: int = Field(default=100, ge=1)
    top_pop_refresh_s: float = Field(default=1.0, gt=0)


class StateSettings(_Section):
    history_size: int = Field(default=50, ge=1)
    # A listen below this fraction counts as a failure (seed 001's fail count).
    fail_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_id: int = Field(default=2**31 - 1, ge=1)


class StreamSettings(_Section):
    app_id: str = "botify-stream"
    workers: int = Field(default=1, ge=1)
    batch_size: int = Field(default=500, ge=1)
    batch_wait_s: float = Field(default=0.005, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BOTIFY_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    catalog: CatalogSettings = CatalogSettings()
    experiments: ExperimentsSettings = ExperimentsSettings()
    recommender: RecommenderSettings = RecommenderSettings()
    state: StateSettings = StateSettings()
    api: ApiSettings = ApiSettings()
    stream: StreamSettings = StreamSettings()
    run_dir: Path = Path("runs")
