"""The distributed setup's files stay consistent with the code (no Docker engine here)."""

from __future__ import annotations

import json
import re

from botify.settings import REPO_DIR
from services.api.metrics import ApiMetrics


def test_dashboard_queries_only_metrics_the_api_exports() -> None:
    exported = {m.name for m in ApiMetrics().registry.collect()}
    dashboard = json.loads((REPO_DIR / "deploy/grafana/dashboards/botify.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(bucket|total)$", "", n) for e in exprs for n in re.findall(r"botify_[a-z_]+", e)
    }
    assert used and used <= {re.sub(r"_total$", "", n) for n in exported}


def test_compose_services_are_configured_through_botify_settings() -> None:
    compose = (REPO_DIR / "docker-compose.yml").read_text()
    for var in ("BOTIFY_KAFKA__BOOTSTRAP_SERVERS", "BOTIFY_REDIS__URL"):
        assert var in compose
    assert 'python", "-m", "services.stream"' in compose
