"""The distributed setup's files stay consistent with the code (no Docker engine here)."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType

from botify.experiments import ExperimentPlan
from botify.settings import REPO_DIR
from botify.telemetry import ConsumerLagMonitor, process_registry
from services.api.metrics import ApiMetrics
from services.stream.metrics import StreamMetrics
from services.trainer.metrics import TrainerMetrics

DASHBOARDS = REPO_DIR / "deploy/grafana/dashboards"


def dashboards_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards", DASHBOARDS.parent / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_exprs() -> list[str]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        doc = json.loads(path.read_text())
        out += [t["expr"] for p in doc["panels"] if p["type"] != "row" for t in p["targets"]]
    return out


def exported_names() -> set[str]:
    """Every metric name a botify process exports, with its sample suffixes."""
    registry = process_registry()
    ApiMetrics(registry=registry)
    StreamMetrics(registry, ExperimentPlan(()))
    TrainerMetrics(registry, ["affinity"])
    ConsumerLagMonitor(None, "g", ["t"], registry, 1.0)  # type: ignore[arg-type]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {m.name + suffix for m in registry.collect() for suffix in suffixes.get(m.type, ("",))}


def test_the_committed_dashboards_are_what_the_code_builds() -> None:
    built = dashboards_module().render()
    assert sorted(built) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, text in built.items():
        assert (DASHBOARDS / name).read_text() == text, f"rebuild {name}: make dashboards"


def test_dashboard_queries_name_only_metrics_botify_exports() -> None:
    exported = exported_names()
    used = {
        n
        for e in dashboard_exprs()
        for n in re.findall(r"\b((?:botify|process|python)_[a-z0-9_]+)", e)
    }
    assert used and used <= exported, sorted(used - exported)


def test_every_dashboard_query_uses_the_datasource_variable_and_rate_interval() -> None:
    for path in DASHBOARDS.glob("*.json"):
        doc = json.loads(path.read_text())
        assert "datasource" in [v["name"] for v in doc["templating"]["list"]]
        for panel in (p for p in doc["panels"] if p["type"] != "row"):
            assert panel["datasource"]["uid"] == "${datasource}"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for expr in dashboard_exprs():
        assert not re.search(r"\[\d+[smhd]\]", expr), f"a fixed range in {expr}"
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range"), expr


def test_compose_services_are_configured_through_botify_settings() -> None:
    compose = (REPO_DIR / "docker-compose.yml").read_text()
    for var in ("BOTIFY_KAFKA__BOOTSTRAP_SERVERS", "BOTIFY_REDIS__URL"):
        assert var in compose
    assert 'python", "-m", "services.stream"' in compose
