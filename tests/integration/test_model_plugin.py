"""Adding a model is two files and one line: a model registered from a plugin module at test
time (tests/integration/models/tiny_pairs*.py, named in BOTIFY_MODELS__PLUGINS, no other edit)
is trained, published, hot-reloaded and served as an arm by the embedded stack, and its
listens are analysed like any arm's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from botify.analysis.freshness import freshness, read_runs
from botify.analysis.report import analyze_file
from botify.catalog import generate_catalog
from botify.listen_export import export_parquet
from botify.models import MODELS, RECIPES, load_plugins, model_readers
from botify.settings import REPO_DIR, Settings
from botify_cli.stack import EmbeddedStack
from tests.factories import registry_restored
from tests.integration.live_model import one_model_env, teach_until_second_version

pytestmark = [pytest.mark.slow]

PLUGIN = "tests.integration.models.tiny_pairs"
MODEL = "tiny_pairs"
DEADLINE_S = 60.0
MAX_SESSIONS = 3_000


@pytest.fixture
def registry() -> Iterator[None]:
    """The registry as it was, after the test: later tests see only the built-in models."""
    with registry_restored(PLUGIN):
        yield


def test_a_plugin_model_is_trained_published_reloaded_served_and_analysed(
    tmp_path: Path, registry: None
) -> None:
    # In this process too: the assertions read the same registry as the services.
    load_plugins([PLUGIN])
    assert MODEL in MODELS and model_readers([MODEL]) == {MODEL: (MODEL,)}
    assert RECIPES[MODEL].reads == (MODEL,)

    cat = generate_catalog(1000, 100, seed=2)
    env = one_model_env(
        tmp_path,
        cat,
        MODEL,
        BOTIFY_MODELS__PLUGINS=json.dumps([PLUGIN]),
        BOTIFY_MODELS__POLL_S="0.5",
        # The subprocesses import the plugin from the checkout.
        PYTHONPATH=str(REPO_DIR),
    )
    settings = Settings()
    with EmbeddedStack(settings, tmp_path / "logs", trainer=True, extra_env=env) as stack:
        assert stack.endpoints is not None
        # A few sessions past the second version, so that it serves some listens.
        traffic = teach_until_second_version(
            stack.endpoints.api,
            cat,
            MODEL,
            users=100,
            max_sessions=MAX_SESSIONS,
            deadline_s=DEADLINE_S,
            sessions_after=10,
        )
        dead = stack.dead()
        # Stopping the API flushes its producer: the export sees every answered request.
        stack.stop_service("api")
        exported = export_parquet(stack.endpoints.kafka_settings(settings.kafka), tmp_path / "e.pq")

    logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
    runs = read_runs(tmp_path / "trainer")
    assert not traffic.failures, traffic.failures[:5]
    assert not dead, (dead, logs)
    promoted = [r for r in runs if r["model"] == MODEL and r["promoted"]]
    assert [r["version"] for r in promoted[:2]] == [1, 2], (runs, logs.get("trainer.log"))
    assert promoted[1]["parent"] == 1  # the second warm-started from the first
    assert traffic.version >= 2, traffic

    events = pl.read_parquet(exported.path)
    served = events.filter(pl.col("model_version").is_not_null())
    assert set(events["recommender"].unique()) == {MODEL}
    assert set(served["model_version"].unique()) >= {1, 2}
    analysis = analyze_file(exported.path, "ALL")
    assert {a.arm for a in analysis.arms} == {"C", "T1"}
    assert sum(a.sessions for a in analysis.arms) > 0
    fresh = freshness(events, MODEL, model_readers([MODEL])[MODEL], runs)
    assert fresh.versions >= 2 and fresh.listens > 0, fresh
