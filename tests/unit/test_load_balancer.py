"""The fleet's HAProxy configuration and the error when HAProxy is missing."""

from __future__ import annotations

import pytest

from botify.errors import ConfigError
from botify.settings import LoadBalancerSettings
from botify_cli import load_balancer
from botify_cli.load_balancer import LoadBalancerPlan, haproxy_binary, haproxy_config

PLAN = LoadBalancerPlan(port=8000, stats_port=8001, instances=(("api-1", 9001), ("api-2", 9002)))


def test_config_balances_every_instance_with_active_health_checks() -> None:
    config = haproxy_config(PLAN, LoadBalancerSettings(check_interval_s=0.5, fall=3, rise=1))
    assert "bind 127.0.0.1:8000" in config
    assert "server api-1 127.0.0.1:9001 check" in config
    assert "server api-2 127.0.0.1:9002 check" in config
    assert "option httpchk GET /health" in config
    assert "inter 500ms fall 3 rise 1" in config
    # A refused connection is retried on another instance; the stats page shows them all.
    assert "option redispatch 1" in config
    assert "bind 127.0.0.1:8001" in config


def test_config_bounds_slow_clients_and_each_instances_connections() -> None:
    settings = LoadBalancerSettings(
        request_timeout_s=3, instance_max_connections=64, queue_timeout_s=2, max_connections=900
    )
    config = haproxy_config(PLAN, settings)
    assert "timeout http-request 3000ms" in config
    assert "option http-buffer-request" in config
    assert "maxconn 64" in config and "timeout queue 2000ms" in config
    assert "maxconn 900" in config


def test_a_missing_haproxy_is_one_line_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load_balancer.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ConfigError, match="apt-get install haproxy"):
        haproxy_binary()
