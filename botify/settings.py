"""One settings object per process, read from ``BOTIFY_*`` environment variables.

Nested sections use ``__``: ``BOTIFY_KAFKA__BOOTSTRAP_SERVERS=host:9092``. Defaults run the
embedded stack. Build ``Settings()`` once in an entry point and pass it (or a section) down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

PACKAGE_DIR = Path(__file__).resolve().parent
# The source checkout, for tests and tools only: nothing botify runs resolves files through
# it (data and schemas ship inside the package).
REPO_DIR = PACKAGE_DIR.parent


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    # Every client's client.id is "<prefix>-<service>" (botify-api, botify-stream, ...).
    client_id_prefix: str = Field(default="botify", pattern=r"^[A-Za-z0-9._-]{1,200}$")
    listens_topic: str = "botify.listens.v1"
    # Training examples the stream derives from listens (botify.training), for the trainer.
    examples_topic: str = "botify.examples.v1"
    partitions: int = Field(default=4, ge=1)
    # For the topics botify creates: replicas of each partition, and how many must have a
    # record before an acks=all write succeeds (None: the broker's default). A three-broker
    # cluster takes 3 and 2: one broker can be lost without losing a write.
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)
    # Retention of the topics botify creates (None: the broker's default). A week of listens
    # lets the stream rebuild Redis from the topic and the trainer re-read its examples; size
    # bounds are per partition. Tansu's memory engine stores these and enforces neither
    # (botify up bounds it with embedded.broker_max_memory_mb instead).
    retention_ms: int | None = Field(default=7 * 24 * 3600 * 1000, ge=-1)
    retention_bytes: int | None = Field(default=None, ge=-1)
    # Tansu (and any broker) makes a group's first join wait ~half the session timeout.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    # Larger batches cost the broker and librdkafka less CPU; events are not latency-critical.
    linger_ms: int = Field(default=20, ge=0)
    produce_retries: int = Field(default=3, ge=0)
    flush_timeout_s: float = Field(default=5.0, gt=0)
    # The API's producer is rebuilt when it is fenced, or when events have waited this long
    # without any leaving it (a restarted broker that forgot its producer id); the events it
    # held go to the new one. Again after 2x, 4x, up to 8x this while nothing is delivered.
    rebuild_after_s: float = Field(default=10.0, gt=0)

    # Transport security of every Kafka client botify builds (librdkafka's names). SASL_*
    # needs sasl_username and sasl_password; SSL verifies the brokers against ssl_ca_location
    # (None: the system's CAs) and presents a client certificate when one is given.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None

    @model_validator(mode="after")
    def _sasl_has_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        return self

    @property
    def dlq_topic(self) -> str:
        return f"{self.listens_topic}.dlq"

    def client_config(self) -> dict[str, str]:
        """What every librdkafka client of botify's starts from: the brokers and how to
        reach them securely."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol != "PLAINTEXT":
            config["security.protocol"] = self.security_protocol
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_username and self.sasl_password  # checked above
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            optional = {
                "ssl.ca.location": self.ssl_ca_location,
                "ssl.certificate.location": self.ssl_certificate_location,
                "ssl.key.location": self.ssl_key_location,
                "ssl.key.password": self.ssl_key_password,
            }
            for key, value in optional.items():
                if isinstance(value, SecretStr):
                    config[key] = value.get_secret_value()
                elif value is not None:
                    config[key] = str(value)
        return config


class RedisSettings(_Section):
    """Both Redis clients (redis-py and the API's pipelined one) read this.

    ``redis://host:port/db``, ``rediss://`` for TLS, ``unix:///path/redis.sock?db=N`` for a
    socket. The password is better kept out of the URL: ``password`` is a secret that
    ``botify settings`` and the logs never show."""

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    # rediss:// only: the CA that signed the server's certificate (None: the system's), and
    # a client certificate for servers that ask for one.
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Off only for a test server with a self-signed certificate; never in production.
    tls_verify: bool = True
    # The API's Redis clients give up on a command after this long (a 503, never a hang).
    timeout_s: float = Field(default=2.0, gt=0)


class CatalogSettings(_Section):
    path: Path = PACKAGE_DIR / "data" / "catalog.sample.jsonl"


class ExperimentsSettings(_Section):
    path: Path = PACKAGE_DIR / "data" / "experiments.toml"
    # Serves users that no experiment with recommenders routes elsewhere.
    default_recommender: str = "random"


class RecommenderSettings(_Section):
    """What every recommender shares. Each learned recommender's own knobs are its recipe's
    section (``botify.models``), kept here as extra keys:
    ``BOTIFY_RECOMMENDER__AFFINITY__SESSION_POWER=8`` (the names they had before,
    ``BOTIFY_RECOMMENDER__AFFINITY_SESSION_POWER``, still work); the API refuses a key that
    is neither a field here nor a registered recipe's."""

    model_config = ConfigDict(frozen=True, extra="allow")

    seed: int = 0
    top_pop_k: int = Field(default=100, ge=1)
    top_pop_refresh_s: float = Field(default=1.0, gt=0)
    # Model-backed recommenders (botify.models). What serves while a model has no version
    # yet or does not know the anchor/user; must not itself need a model.
    model_fallback: str = "sticky_artist"
    # A session track listened to at least this fraction is "liked" (the `liked` anchor).
    liked_threshold: float = Field(default=0.6, ge=0.0, le=1.0)


class StateSettings(_Section):
    history_size: int = Field(default=50, ge=1)
    # A listen below this fraction counts as a failure (seed 001's fail count).
    fail_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_id: int = Field(default=2**31 - 1, ge=1)
    # What a 200 means. "buffer": the event is in this instance's producer buffer (fast; a
    # crash loses the buffer, README "Durability"). "acks": the broker acknowledged it
    # (acks=all), awaited at most ack_timeout_s, else 503.
    durability: Literal["buffer", "acks"] = "buffer"
    ack_timeout_s: float = Field(default=5.0, gt=0)
    # Keys that writes (/next, /last), /metrics and the docs require (services/api/auth.py),
    # as a JSON list: BOTIFY_API__API_KEYS='["key-1", "key-2"]' (two during a rotation).
    # Empty: no authentication (the embedded default; compose sets one).
    api_keys: tuple[SecretStr, ...] = ()

    @property
    def client_key(self) -> str | None:
        """The key botify's own clients send (the simulator, Prometheus): the first one."""
        return self.api_keys[0].get_secret_value() if self.api_keys else None

    # Delivery is unhealthy (/health 503) when the oldest event waiting in the producer has
    # waited longer than delivery_stall_s, or the latest deliveries failed (within
    # failure_window_s, nothing delivered since). Then /next and /last answer 503 under
    # "refuse", or go on answering 200 (events pile up in the buffer) under "accept".
    # Server limits. Connections beyond max_connections get 503 (idle ones count); a client
    # must send its request's headers within header_timeout_s (408) and at most
    # max_header_bytes of them (431), then its body within body_timeout_s (408) and at most
    # max_body_bytes of it (413). An idle keep-alive connection is closed after keep_alive_s.
    max_connections: int = Field(default=4096, ge=1)
    backlog: int = Field(default=2048, ge=1)
    keep_alive_s: float = Field(default=5.0, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=16_384, ge=1024)
    body_timeout_s: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=65_536, ge=64)
    delivery_stall_s: float = Field(default=10.0, gt=0)
    failure_window_s: float = Field(default=30.0, gt=0)
    on_delivery_failure: Literal["refuse", "accept"] = "refuse"


class LoadBalancerSettings(_Section):
    """HAProxy in front of the fleet's API instances (``botify up --api-instances N``)."""

    # Active health checks on each instance's /health: down after `fall` failures, back up
    # after `rise` successes.
    check_interval_s: float = Field(default=1.0, gt=0)
    fall: int = Field(default=2, ge=1)
    rise: int = Field(default=2, ge=1)
    connect_timeout_s: float = Field(default=2.0, gt=0)
    # An idle client or a slow instance is cut after this long.
    client_timeout_s: float = Field(default=30.0, gt=0)
    server_timeout_s: float = Field(default=30.0, gt=0)
    # A connection an instance refused (it died) is retried this many times, the last ones
    # on another instance; a request an instance already received is never replayed.
    retries: int = Field(default=2, ge=0)
    # HAProxy needs two descriptors per connection: keep within the usual 20k fd limit.
    max_connections: int = Field(default=4096, ge=1)
    # Slowloris guard: a client must send a whole request (headers and body: HAProxy
    # buffers the body before passing it on) within this long, else 408.
    request_timeout_s: float = Field(default=10.0, gt=0)
    # Requests in flight per instance; more wait in HAProxy's queue, at most queue_timeout_s
    # (then 503), so an instance is never flooded by connections.
    instance_max_connections: int = Field(default=256, ge=1)
    queue_timeout_s: float = Field(default=5.0, gt=0)


class StreamSettings(_Section):
    app_id: str = "botify-stream"
    workers: int = Field(default=1, ge=1)
    # A batch is what one consume call returns: up to batch_size records, waiting at most
    # batch_wait_s for them. Bigger batches amortise the round trips to Redis and the broker.
    batch_size: int = Field(default=2000, ge=1)
    batch_wait_s: float = Field(default=0.02, gt=0)
    # A batch's users are folded and committed in chunks of this many, so that Redis and the
    # broker work on one chunk while the next one folds.
    chunk_users: int = Field(default=250, ge=1)
    # Users whose last committed state a worker keeps in memory, so that a batch reads from
    # Redis only the others (about 1.5 KB each).
    state_cache_users: int = Field(default=50_000, ge=0)
    # A broker may hold a fetch this long even when records are waiting (Tansu does).
    fetch_wait_ms: int = Field(default=20, ge=0)
    # Offsets of processed batches are committed this often (and on rebalance and exit).
    commit_interval_ms: int = Field(default=500, ge=1)
    # Publish a training example per listen after a session's first (the trainer's data);
    # off, a worker folds state only.
    examples: bool = True
    # Dead-letter listens whose track or recommendation is not in the catalog
    # (catalog.path, read at start) rather than counting them in state and popularity.
    check_tracks: bool = True
    # A dead-letter copy keeps at most this much of the record's value (the rest is cut, and
    # its headers say so): under the producer's 1 MB message limit whatever the record's size.
    dead_letter_max_bytes: int = Field(default=65_536, ge=0, le=900_000)
    # A dead letter the broker refuses for itself (too large, invalid) this many times, the
    # last ones without its value, is skipped: logged with its source and counted
    # (botify_stream_events_total{outcome="skipped"}), never a stall. An outage of the broker
    # as a whole is waited out instead, as for every other step.
    retry_attempts: int = Field(default=8, ge=1)
    # After SIGTERM a worker finishes or abandons its batch (a replay redoes it), commits its
    # offsets and leaves the group; if that takes longer than this, it exits anyway.
    shutdown_grace_s: float = Field(default=10.0, gt=0)
    # How long the worker's producer holds training examples (and dead letters) to batch
    # them. A chunk's examples are sent as soon as it is folded and waited for only once the
    # next chunk is folded: held for the API's 20 ms, they were still waiting then, and each
    # chunk paid a whole round trip to the broker.
    linger_ms: int = Field(default=1, ge=0)
    # Allocations between two passes of Python's cyclic garbage collector over its young
    # objects (CPython's default is 700). A batch allocates dozens of short-lived objects per
    # event, none of them in cycles; at the default the collector's passes, and the full
    # ones they trigger over the state cache, took a third of the worker's CPU; at 10,000
    # still 2-3 µs per event, at 50,000 0.2 µs (bench/bench_stream_cpu.py, gc column).
    gc_threshold: int = Field(default=50_000, ge=1)
    # A batch's commits stay in flight while the next batch is taken and folded, so Redis
    # applies one batch while the worker folds the next; off only to measure what that gains
    # (bench/bench_stream.py --throughput).
    pipeline: bool = True


class MetricsSettings(_Section):
    """Prometheus endpoints. The API serves ``/metrics`` on its own port; stream workers and
    the trainer serve theirs on these (``botify up`` gives each process a free one)."""

    # 0.0.0.0 in a container, so Prometheus can reach it.
    host: str = "127.0.0.1"
    stream_port: int = Field(default=9101, ge=0, le=65535)
    trainer_port: int = Field(default=9102, ge=0, le=65535)
    # How often each process reads its consumer group's lag from the broker.
    lag_interval_s: float = Field(default=5.0, gt=0)
    # A stream worker's or the trainer's /health turns 503 when its main loop has not gone
    # round for this long (stuck retrying a dead backend, a hung training round).
    stall_s: float = Field(default=120.0, gt=0)
    # The API's per-request metrics; off only to measure what they cost (bench/bench_api.py).
    requests: bool = True


class TrainingDataSettings(_Section):
    """The trainer's on-disk log of training examples (``botify.example_log``)."""

    # A relative directory is under ``Settings.run_dir``.
    directory: Path = Path("examples")
    max_rows_per_part: int = Field(default=50_000, ge=1)
    # Bounds the disk: the oldest parts are deleted beyond this many.
    max_parts: int = Field(default=200, ge=1)
    # (partition, offset, timestamp) keys remembered to drop republished examples before they
    # are written.
    recent_keys: int = Field(default=200_000, ge=0)
    consumer_group: str = "botify-trainer-examples"

    def path(self, run_dir: Path) -> Path:
        """The log's directory: ``directory`` under ``run_dir`` unless it is absolute."""
        return run_dir / self.directory


class ModelSettings(_Section):
    """Versioned model artifacts (``botify.model_store``) and their hot reload in the API."""

    # A relative directory is under ``Settings.run_dir``.
    dir: Path = Path("models")
    # Announcements of new versions; the Redis pointer stays the source of truth.
    announce_topic: str = "botify.models.v1"
    # Versions kept on disk per model; the served one is never pruned.
    keep_versions: int = Field(default=5, ge=1)
    # The API re-reads the pointers this often, in case an announcement was missed.
    poll_s: float = Field(default=2.0, gt=0)
    # Modules that register more learned recommenders (botify.models.registry) when
    # imported, beside the built-in ones: BOTIFY_MODELS__PLUGINS='["my_models.tiny"]'. Every
    # process that trains, serves or names them loads them (README "Adding a model").
    plugins: tuple[str, ...] = ()

    def path(self, run_dir: Path) -> Path:
        """The models' directory: ``dir`` under ``run_dir`` unless it is absolute."""
        return run_dir / self.dir


class ModelHyperParams(_Section):
    """What every trained model has (``services/trainer/models``); each model overrides."""

    dim: int = Field(default=32, ge=1)
    # Override the trainer's train_budget_s and window_rows for this model (None: the
    # trainer's). A model that needs many passes trains on fewer, newer rows, and its warm
    # start carries what older ones taught.
    budget_s: float | None = Field(default=None, gt=0)
    window_rows: int | None = Field(default=None, ge=1)
    # Trained in one round out of this many: the trainer shares the machine, and the
    # models that serve best should be the freshest.
    every_rounds: int = Field(default=1, ge=1)
    # The metric that decides promotion for this model (None: the trainer's primary_key),
    # e.g. "mse" for a model whose lists a policy re-filters (the held-out ranking then
    # measures the wrong thing).
    promote_on: str | None = None
    # An upper bound: the trainer's time budget may stop a run earlier.
    epochs: int = Field(default=5, ge=1)
    batch_size: int = Field(default=4096, ge=1)
    lr: float = Field(default=0.02, gt=0)
    # L2 penalty on the parameters a batch touches (sparse tables cannot take weight decay).
    l2: float = Field(default=1e-3, ge=0)


class TrainerSettings(_Section):
    """How the trainer fits, exports and judges models (``services/trainer``).

    Each model's hyper-parameters are its own section, defined with the model
    (``botify.models``, ``LearnedModel.params``) and kept here as extra keys:
    ``BOTIFY_TRAINER__AFFINITY__EPOCHS=10`` or ``BOTIFY_TRAINER__AFFINITY='{"epochs": 10}'``.
    ``botify.models.hyper_params`` validates them; the trainer refuses a section that names
    no registered model."""

    model_config = ConfigDict(frozen=True, extra="allow")

    # Registry names (botify.models) the rounds train, in this order (each model in one
    # round out of its every_rounds). None: every registered model, plugins included, in
    # the registry's order (botify.models.trained_models).
    models: tuple[str, ...] | None = None
    # A round starts every_s after the last one if anything new came, or sooner after
    # every_examples new examples.
    # every_s = inf: rounds by data only (the demo's paced runs).
    every_s: float = Field(default=10.0, gt=0)
    every_examples: int = Field(default=50_000, ge=1)
    # After a failed round (a broker or Redis blip), wait this long before the next try.
    retry_s: float = Field(default=10.0, gt=0)
    # The newest examples a round trains on, and fewer than min_examples are not trained on.
    window_rows: int = Field(default=200_000, ge=1)
    min_examples: int = Field(default=500, ge=1)
    # Between rounds the trainer reads the examples topic in polls of at most this many
    # records, waiting at most poll_s for the first.
    poll_records: int = Field(default=5_000, ge=1)
    poll_s: float = Field(default=0.2, gt=0)
    # The example log is written (and the topic's offsets committed) once this many
    # examples are buffered or flush_s has passed: the log's bound counts parts.
    flush_rows: int = Field(default=20_000, ge=1)
    flush_s: float = Field(default=60.0, gt=0)
    seed: int = 0
    # "auto" takes CUDA when there is one.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The API shares the machine's cores with the trainer.
    threads: int = Field(default=1, ge=1)
    # Wall-clock budgets of one run: training steps stop at the first, top-K rows at the
    # second (rows left are padded and counted in the metrics).
    train_budget_s: float = Field(default=2.0, gt=0)
    export_budget_s: float = Field(default=2.0, gt=0)
    # A run warm-started from the served version learns at this fraction of its lr.
    warm_lr_factor: float = Field(default=1.0, gt=0, le=1)
    # Length of the exported lists (track_neighbours, user_top).
    top_k: int = Field(default=100, ge=1)
    # Query rows scored at once when ranking the full catalogue.
    export_block: int = Field(default=128, ge=1)
    # A listen at least this fraction of the track is a positive.
    positive_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    # The most recent share of the window, held out to evaluate and compare versions.
    holdout_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    # Small, because held-out examples are not trained on in that round: they wait a round.
    holdout_max_rows: int = Field(default=3_000, ge=1)
    eval_k: int = Field(default=10, ge=1)
    primary_metric: Literal["ndcg", "hr"] = "ndcg"
    # A new version replaces the served one when primary >= served primary + tolerance,
    # and it is not worse by more than promote_z standard errors of the held-out estimate
    # (a small holdout is noisy; refusing on noise would freeze the served version).
    promote_tolerance: float = 0.0
    promote_z: float = Field(default=1.96, ge=0.0)

    @property
    def primary_key(self) -> str:
        """The metric name ``botify.evaluation`` reports for ``primary_metric`` at ``eval_k``."""
        return f"{self.primary_metric}@{self.eval_k}"


class TrafficSettings(_Section):
    """Simulated traffic (``botify sim``, ``botify demo``)."""

    # Sessions started per second; 0 drives them as fast as the machine goes. The default is
    # what a 2-core machine holds with the whole stack and the trainer on it (README).
    rate: float = Field(default=30.0, ge=0.0)


class DemoSettings(_Section):
    """``botify demo``: which recommenders get an arm, and how the trainer is paced."""

    # Each gets an arm beside the control (Random); at most 8 (a split has at most 9 groups).
    arms: tuple[str, ...] = (
        "affinity",
        "cascade",
        "contextual",
        "dae",
        "next_track",
        "next_track_diverse",
        "sticky_artist",
        "top_pop",
    )
    # A training round after every this many new examples, and no timed rounds: with paced
    # traffic the rounds per session of traffic are then the same on any machine that keeps
    # up. The budgets are raised so that every run stops at its epochs, not at the clock.
    train_every_examples: int = Field(default=12_000, ge=1)
    train_budget_s: float = Field(default=60.0, gt=0)
    # report.html: each arm's mean time per session in windows of this many of its sessions,
    # and freshness in bins of this many seconds.
    curve_window: int = Field(default=200, ge=1)
    freshness_bin_s: float = Field(default=5.0, gt=0)
    # The oracle's ceiling is computed on the first this many measured episodes (about
    # 4 ms each here; its standard error is printed beside it).
    oracle_sessions: int = Field(default=4_000, ge=1)


class EmbeddedSettings(_Section):
    """``botify up``'s own processes: how it heals a crashed service and bounds the broker."""

    # A crashed API instance, stream worker or trainer is restarted after restart_backoff_s,
    # doubling on each crash in a row up to restart_backoff_max_s; a child that stays up
    # restart_stable_s counts as healthy again (its backoff starts over).
    restart_backoff_s: float = Field(default=1.0, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    restart_stable_s: float = Field(default=60.0, gt=0)
    # When the broker or Redis dies, every other process gets this long to exit on SIGTERM
    # (all at once), then SIGKILL: the API's flush to a dead broker must not hold the exit.
    stop_grace_s: float = Field(default=5.0, gt=0)
    # The embedded broker (Tansu's memory engine) keeps every event in memory and honours no
    # retention (it has no DeleteRecords either): at this resident size botify up stops the
    # stack with a clear message instead of letting the kernel's OOM killer pick a victim.
    # 0 turns the guard off. About 1.1 KB per listen event.
    broker_max_memory_mb: int = Field(default=4096, ge=0)


class _SectionsEnvSource(EnvSettingsSource):
    """The environment, where a model's or recipe's section given whole as JSON
    (``BOTIFY_TRAINER__AFFINITY='{"epochs": 3}'``) and one of its fields given alone
    (``BOTIFY_TRAINER__AFFINITY__LR=0.5``) merge, the single field winning: pydantic-settings
    would keep only one of the two, silently."""

    def explode_env_vars(
        self, field_name: str, field: FieldInfo, env_vars: Mapping[str, str | None]
    ) -> dict[str, Any]:
        result = super().explode_env_vars(field_name, field, env_vars)
        section_type = field.annotation
        if not (isinstance(section_type, type) and issubclass(section_type, _Section)):
            return result
        if section_type.model_config.get("extra") != "allow":
            return result
        delimiter = self.env_nested_delimiter or "__"
        prefix = f"{self.env_prefix}{field_name}{delimiter}"
        if not self.case_sensitive:
            prefix = prefix.lower()
        for env_name, whole in env_vars.items():
            name = env_name[len(prefix) :]
            if not env_name.startswith(prefix) or not whole or delimiter in name:
                continue
            if name in section_type.model_fields:
                continue
            fields = {
                key[len(name) + len(delimiter) :]: value
                for key, value in ((k[len(prefix) :], v) for k, v in env_vars.items())
                if key.startswith(f"{name}{delimiter}") and value is not None
            }
            if not fields:
                continue
            try:
                decoded = json.loads(whole)
            except ValueError:
                continue  # invalid JSON: the section's own validation reports it
            if isinstance(decoded, dict):
                result[name] = {**decoded, **fields}
        return result


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
    load_balancer: LoadBalancerSettings = LoadBalancerSettings()
    stream: StreamSettings = StreamSettings()
    metrics: MetricsSettings = MetricsSettings()
    training_data: TrainingDataSettings = TrainingDataSettings()
    models: ModelSettings = ModelSettings()
    trainer: TrainerSettings = TrainerSettings()
    traffic: TrafficSettings = TrafficSettings()
    demo: DemoSettings = DemoSettings()
    embedded: EmbeddedSettings = EmbeddedSettings()
    run_dir: Path = Path("runs")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _SectionsEnvSource(settings_cls),
            dotenv_settings,
            file_secret_settings,
        )
