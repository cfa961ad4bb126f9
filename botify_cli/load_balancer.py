"""The fleet's load balancer: HAProxy in front of N API instances, configured by botify.

HAProxy rather than nginx: its open-source build has active health checks. It polls every
instance's ``/health`` and takes a failing one out of rotation before clients hit it, and it
marks an instance down at the first refused connection. nginx OSS only has passive checks: it
notices a dead upstream when a client request fails on it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from botify.errors import ConfigError
from botify.settings import LoadBalancerSettings
from botify_cli.processes import HTTPChild, http_child

INSTALL_HINT = "apt-get install haproxy"
# Each response names the instance that served it (a debugging aid, and how tests see the
# requests of one session spread over instances).
INSTANCE_HEADER = "X-Botify-Instance"


def haproxy_binary() -> str:
    """``haproxy`` from PATH (or /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ConfigError(f"the load balancer needs HAProxy, not installed: {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class LoadBalancerPlan:
    """Where the load balancer listens and the instances it spreads requests over."""

    port: int
    stats_port: int
    instances: tuple[tuple[str, int], ...]  # (name, port) on 127.0.0.1
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stats_url(self) -> str:
        return f"http://{self.host}:{self.stats_port}/"


def _s(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def haproxy_config(plan: LoadBalancerPlan, settings: LoadBalancerSettings) -> str:
    """HAProxy's configuration for ``plan``: round robin per request, active checks on
    ``/health``, refused connections retried on another instance, a stats page that also
    serves HAProxy's Prometheus metrics at ``/metrics``."""
    servers = "\n".join(
        f"    server {name} 127.0.0.1:{port} check" for name, port in plan.instances
    )
    checks = (
        f"inter {_s(settings.check_interval_s)} fall {settings.fall} rise {settings.rise} "
        "observe layer4 error-limit 1 on-error mark-down "
        f"maxconn {settings.instance_max_connections}"
    )
    return f"""\
# Written by botify; regenerated at every start.
global
    maxconn {settings.max_connections}

defaults
    mode http
    timeout connect {_s(settings.connect_timeout_s)}
    timeout client {_s(settings.client_timeout_s)}
    timeout server {_s(settings.server_timeout_s)}
    timeout http-keep-alive {_s(settings.client_timeout_s)}
    # The front line against slow clients (the instances have their own limits too): a
    # whole request within request_timeout_s, body included (buffered here first), so a
    # slowloris client never holds an instance's connection. Headers are bounded by
    # HAProxy's buffer (tune.bufsize, 16 KB): larger ones get 400 here.
    timeout http-request {_s(settings.request_timeout_s)}
    option http-buffer-request
    timeout queue {_s(settings.queue_timeout_s)}
    retries {settings.retries}
    # Every retry of a refused connection goes to another instance.
    option redispatch 1

frontend botify
    bind {plan.host}:{plan.port}
    default_backend api

backend api
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    http-response set-header {INSTANCE_HEADER} %[srv_name]
    # Down after `fall` failed checks, or at once when a connection to it fails.
    default-server {checks}
{servers}

frontend stats
    bind {plan.host}:{plan.stats_port}
    http-request use-service prometheus-exporter if {{ path /metrics }}
    stats enable
    stats uri /
    stats refresh 5s
"""


def haproxy_process(
    plan: LoadBalancerPlan,
    settings: LoadBalancerSettings,
    run_dir: Path,
    env: dict[str, str],
    timeout: float,
) -> HTTPChild:
    """HAProxy in the foreground with its config written in ``run_dir``; ready when a request
    through it reaches a healthy instance."""
    binary = haproxy_binary()
    config = run_dir.resolve() / "haproxy.cfg"
    config.write_text(haproxy_config(plan, settings))
    command = [binary, "-db", "-f", str(config)]
    return http_child(command, f"{plan.url}/health", run_dir, "load-balancer", timeout, env)
