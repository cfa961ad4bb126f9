"""The embedded stack: broker, Redis, API, stream workers and the trainer as supervised local
processes.

Used by ``botify up``, ``botify demo``, ``botify bench`` and the end-to-end tests. Each child
gets its endpoints through ``BOTIFY_*`` variables, so the services run exactly as they would
against a real Kafka cluster and Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from mirakuru.base import Executor, SimpleExecutor

from botify.errors import BackendUnavailableError
from botify.settings import KafkaSettings, Settings
from botify_cli.load_balancer import LoadBalancerPlan, haproxy_binary, haproxy_process
from botify_cli.processes import (
    Child,
    broker_process,
    free_port,
    http_child,
    log_file,
    redis_process,
)
from botify_cli.prometheus import (
    PrometheusQuery,
    ScrapeTarget,
    prometheus_binary,
    prometheus_process,
    write_config,
    write_targets,
)


@dataclass
class StackEndpoints:
    broker: str
    redis: str
    # The public API: the load balancer's address when there is one, else the one instance.
    api: str
    logs: Path
    # Each API instance's own address (one: the same as ``api`` without a load balancer).
    instances: tuple[str, ...] = ()
    # HAProxy's stats page (its Prometheus metrics at ``/metrics``), with a load balancer.
    load_balancer_stats: str | None = None
    # Every process's /metrics, and the Prometheus that scrapes them (None: not started).
    metrics: list[ScrapeTarget] = field(default_factory=list)
    prometheus: str | None = None

    def env(self) -> dict[str, str]:
        return {
            "BOTIFY_KAFKA__BOOTSTRAP_SERVERS": self.broker,
            "BOTIFY_REDIS__URL": self.redis,
        }

    def kafka_settings(self, base: KafkaSettings) -> KafkaSettings:
        """``base`` pointed at the embedded broker, which speaks plain text only."""
        return base.model_copy(
            update={"bootstrap_servers": self.broker, "security_protocol": "PLAINTEXT"}
        )


# Settings for a real cluster's Redis and Kafka (passwords, TLS, SASL), which the embedded
# ones do not speak: a shell that has them set must not make every child fail to connect.
_REAL_BACKENDS_ONLY = (
    "BOTIFY_REDIS__",
    "BOTIFY_KAFKA__SECURITY_PROTOCOL",
    "BOTIFY_KAFKA__SASL_",
    "BOTIFY_KAFKA__SSL_",
)


def embedded_environ() -> dict[str, str]:
    """This process's environment without the real backends' security settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_REAL_BACKENDS_ONLY)}


def _api_env(url: str) -> dict[str, str]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return {"BOTIFY_API__HOST": host, "BOTIFY_API__PORT": port}


@dataclass
class EmbeddedStack:
    """Starts the children in dependency order and stops them in reverse."""

    settings: Settings
    log_dir: Path
    api_port: int | None = None
    # API processes; more than one sit behind a load balancer (HAProxy) on ``api_port``.
    api_instances: int = 1
    # None: a load balancer exactly when there is more than one instance.
    load_balancer: bool | None = None
    stream_workers: int = 1
    # The trainer learns from the stream and publishes models the API hot-reloads.
    trainer: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # A real Prometheus (from PATH) scraping every process, with botify's alert rules.
    prometheus: bool = False
    scrape_interval_s: float = 5.0
    start_timeout: float = 60.0
    children: list[tuple[str, SimpleExecutor]] = field(default_factory=list)
    endpoints: StackEndpoints | None = None

    def start(self, on_step: object = None) -> StackEndpoints:
        """Start everything and wait until each part is healthy; stops all on failure."""
        say = on_step if callable(on_step) else (lambda _msg: None)
        if self.prometheus:
            prometheus_binary()  # no binary: say so before anything starts
        broker_port, redis_port = free_port(), free_port()
        public_port = self.api_port or free_port()
        balanced = self.api_instances > 1 if self.load_balancer is None else self.load_balancer
        if balanced:
            haproxy_binary()  # a missing load balancer fails before anything starts
        ports = [free_port() for _ in self.api_names()] if balanced else [public_port]
        instances = tuple(f"http://127.0.0.1:{port}" for port in ports)
        named = tuple(zip(self.api_names(), ports, strict=True))
        plan = LoadBalancerPlan(public_port, free_port(), named) if balanced else None
        self.endpoints = StackEndpoints(
            broker=f"127.0.0.1:{broker_port}",
            redis=f"redis://127.0.0.1:{redis_port}/0",
            api=f"http://127.0.0.1:{public_port}",
            logs=self.log_dir,
            instances=instances,
            load_balancer_stats=plan.stats_url if plan else None,
        )
        env = {**embedded_environ(), **self.extra_env, **self.endpoints.env()}
        metrics = self.endpoints.metrics
        try:
            say("broker")
            self._add("broker", broker_process(broker_port, self.log_dir, self.start_timeout))
            say("redis")
            self._add("redis", redis_process(redis_port, self.log_dir, self.start_timeout))
            for name, url in zip(self.api_names(), instances, strict=True):
                say(name)
                self._add(
                    name,
                    self._service(
                        "api", {**env, **_api_env(url)}, health=f"{url}/health", name=name
                    ),
                )
                metrics.append(ScrapeTarget("api", name, url.removeprefix("http://")))
            if plan is not None:
                say("load balancer")
                self._add(
                    "load-balancer",
                    haproxy_process(
                        plan, self.settings.load_balancer, self.log_dir, env, self.start_timeout
                    ),
                )
                lb = plan.stats_url.removeprefix("http://").rstrip("/")
                metrics.append(ScrapeTarget("load-balancer", "load-balancer", lb))
            for i in range(self.stream_workers):
                name, port = f"stream-{i + 1}", free_port()
                say(f"stream worker {i + 1}")
                worker_env = {**env, "BOTIFY_METRICS__STREAM_PORT": str(port)}
                # Ready once it serves /health: its topics exist and its settings parse.
                ready = f"http://127.0.0.1:{port}/health"
                self._add(name, self._service("stream", worker_env, health=ready, name=name))
                metrics.append(ScrapeTarget("stream", name, f"127.0.0.1:{port}"))
            if self.trainer:
                port = free_port()
                say("trainer")
                trainer_env = {**env, "BOTIFY_METRICS__TRAINER_PORT": str(port)}
                ready = f"http://127.0.0.1:{port}/health"
                self._add("trainer", self._service("trainer", trainer_env, health=ready))
                metrics.append(ScrapeTarget("trainer", "trainer", f"127.0.0.1:{port}"))
            targets = write_targets(self.log_dir / "prometheus" / "targets.json", metrics)
            if self.prometheus:
                say("prometheus")
                port = free_port()
                config = write_config(
                    targets.parent, targets, self.scrape_interval_s, self.settings.api.client_key
                )
                data = targets.parent / "data"
                self._add(
                    "prometheus",
                    prometheus_process(port, config, data, self.log_dir, self.start_timeout),
                )
                self.endpoints.prometheus = f"http://127.0.0.1:{port}"
                # Ready means every process is scraped: a run that starts now is recorded
                # from its first request (the counters' zeros included).
                prom = PrometheusQuery(self.endpoints.prometheus)
                try:
                    prom.wait_scraped(len(metrics), self.start_timeout)
                finally:
                    prom.close()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def api_names(self) -> list[str]:
        """The API children's names: ``api`` alone, else ``api-1`` .. ``api-N``."""
        if self.api_instances == 1:
            return ["api"]
        return [f"api-{i + 1}" for i in range(self.api_instances)]

    def _add(self, name: str, child: SimpleExecutor) -> None:
        try:
            child.start()
        except Exception as exc:
            raise BackendUnavailableError(
                f"{name} did not become ready: {exc}; see {self.log_dir / name}.log"
            ) from None
        self.children.append((name, child))

    def _service(
        self, service: str, env: dict[str, str], health: str | None = None, name: str = ""
    ) -> SimpleExecutor:
        command = [sys.executable, "-m", f"services.{service}"]
        if health:
            return http_child(
                command, health, self.log_dir, name or service, self.start_timeout, env
            )
        log = log_file(self.log_dir, name or service)
        return Child(command, envvars=env, stdout=log, stderr=log, stdin=None, timeout=30)

    def stop_service(self, name: str) -> None:
        """Stop one child gracefully (the API flushes its pending events on the way out)."""
        for i, (child_name, child) in enumerate(self.children):
            if child_name == name:
                try:
                    child.stop()
                except Exception:  # exited with an error: it is stopped either way
                    child.kill()
                del self.children[i]
                return

    def kill_service(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one child (and its process group) without letting it clean up: a crash."""
        for i, (child_name, child) in enumerate(self.children):
            if child_name == name:
                child.kill(wait=True, sig=sig)
                del self.children[i]
                return
        raise KeyError(name)

    def dead(self) -> list[str]:
        """Names of children that have exited."""
        return [name for name, child in self.children if not child.running()]

    def _child(self, name: str) -> SimpleExecutor:
        for child_name, child in self.children:
            if child_name == name:
                return child
        raise KeyError(name)

    def exit_code(self, name: str) -> int | None:
        """The exit code of a child that has exited (None: running, or not known)."""
        process = self._child(name).process
        return None if process is None else process.poll()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def resident_bytes(self, name: str) -> int | None:
        """A running child's resident memory (None: not running)."""
        process = self._child(name).process
        if process is None:
            return None
        try:
            return int(psutil.Process(process.pid).memory_info().rss)
        except psutil.Error:
            return None

    def respawn(self, name: str) -> None:
        """Start an exited child again with its command and environment, without waiting
        for it (a supervisor has other children to watch meanwhile): ``ready(name)`` says
        when it is healthy. BackendUnavailableError when it cannot even be started (its
        port is taken, say)."""
        child = self._child(name)
        child.kill()  # reaps the exited process and any child it left behind
        if isinstance(child, Executor) and child.pre_start_check():
            # Another process holds the child's port: ready() would probe it, not the child.
            raise BackendUnavailableError(
                f"{name} could not be started: its port is taken by another process"
            )
        try:
            # The process only: Executor.start() would also wait, up to its start timeout.
            SimpleExecutor.start(child)
        except Exception as exc:
            child.kill()
            raise BackendUnavailableError(
                f"{name} could not be started: {exc}; see {self.log_path(name)}"
            ) from None

    def ready(self, name: str) -> bool:
        """Whether a respawned child is healthy yet (its URL or port answers; a child with
        neither: once running). BackendUnavailableError, leaving it stopped, when it exited
        or its start timeout passed first."""
        child = self._child(name)
        if not child.running():
            code = self.exit_code(name)
            child.kill()
            raise BackendUnavailableError(
                f"{name} exited with code {code} before it was ready; see {self.log_path(name)}"
            )
        if not isinstance(child, Executor) or child.after_start_check():
            return True
        if child.check_timeout():
            return False
        child.kill()
        raise BackendUnavailableError(
            f"{name} did not become ready within its start timeout; see {self.log_path(name)}"
        )

    def stop(self, grace_s: float | None = None) -> None:
        """Stop every child: in reverse start order, each given its own time to exit cleanly
        (the API flushes to the broker, so the broker goes last); or, with ``grace_s``, all
        at once within ``grace_s`` before SIGKILL, for a stack whose backend is gone."""
        if grace_s is not None:
            self._stop_at_once(grace_s)
        for _name, child in reversed(self.children):
            try:
                child.stop()
            except Exception:  # already gone, or exited with an error: it is stopped either way
                child.kill()
        self.children.clear()

    def _stop_at_once(self, grace_s: float) -> None:
        groups = [
            child.process.pid
            for _, child in self.children
            if child.running() and child.process is not None
        ]
        for pgid in groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(c.running() for _, c in self.children):
            time.sleep(0.05)
        for _name, child in self.children:
            child.kill(sig=signal.SIGKILL)

    def __enter__(self) -> EmbeddedStack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def new_run_dir(settings: Settings, kind: str) -> Path:
    path = settings.run_dir / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path
