"""HAProxy itself accepts the configs botify writes and ships (``haproxy -c``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from botify.settings import REPO_DIR, LoadBalancerSettings
from botify_cli.load_balancer import LoadBalancerPlan, haproxy_binary, haproxy_config


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [haproxy_binary(), "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )


def test_haproxy_accepts_the_config_botify_up_writes(tmp_path: Path) -> None:
    plan = LoadBalancerPlan(
        port=18000, stats_port=18001, instances=(("api-1", 18002), ("api-2", 18003))
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(plan, LoadBalancerSettings()))
    done = check(config)
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_accepts_the_compose_load_balancer_config() -> None:
    done = check(REPO_DIR / "deploy" / "haproxy.cfg")
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_refuses_a_broken_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text((REPO_DIR / "deploy" / "haproxy.cfg").read_text() + "\n    balanse x\n")
    assert check(config).returncode != 0
