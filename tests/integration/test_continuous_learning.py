"""The continuous-learning loop on the whole embedded stack: requests become listens, the
stream turns them into examples, the trainer learns from them and publishes versions, and
the API serves those versions, all while requests keep being answered."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from botify.analysis.freshness import read_runs
from botify.catalog import Catalog, Track, generate_catalog
from botify.settings import Settings
from botify_cli.stack import EmbeddedStack
from tests.integration.live_model import one_model_env, served_version, teach_until_second_version

pytestmark = [pytest.mark.slow]

MODEL = "affinity"
# How long the loop may take to go from no model to a second served version. Generous:
# two cores are shared with the broker, Redis, the API, the stream and the trainer.
DEADLINE_S = 90.0
MAX_SESSIONS = 5_000


def catalog() -> Catalog:
    """2,000 tracks by 200 artists; a quarter of the artists have no genre, so the model
    ranks both within genres and within the group of tracks without one."""
    tracks = generate_catalog(2000, 200, seed=1).tracks
    return Catalog(
        tuple(
            Track(t.track, t.artist, t.title) if int(t.artist.split()[-1]) % 4 == 0 else t
            for t in tracks
        )
    )


def served(api: str) -> int:
    """The API's served version of the model (0: none yet)."""
    return served_version(httpx.get(f"{api}/metrics", timeout=10).text, MODEL)


def promoted(run_dir: Path) -> list[dict[str, object]]:
    return [r for r in read_runs(run_dir / "trainer") if r["model"] == MODEL and r["promoted"]]


def test_the_trainer_learns_from_live_traffic_and_the_api_serves_its_versions(
    tmp_path: Path,
) -> None:
    cat = catalog()
    env = one_model_env(tmp_path, cat, MODEL, BOTIFY_MODELS__POLL_S="0.5")
    with EmbeddedStack(Settings(), tmp_path / "logs", trainer=True, extra_env=env) as stack:
        assert stack.endpoints is not None
        api = stack.endpoints.api
        traffic = teach_until_second_version(
            api, cat, MODEL, users=200, max_sessions=MAX_SESSIONS, deadline_s=DEADLINE_S
        )
        version = served(api)
        dead = stack.dead()

    runs = promoted(tmp_path)
    logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "logs").glob("*.log")}
    assert not traffic.failures, traffic.failures[:5]
    assert not dead, (dead, logs)
    assert len(runs) >= 2, (
        traffic.sessions,
        read_runs(tmp_path / "trainer"),
        logs.get("trainer.log"),
    )
    assert [r["version"] for r in runs[:2]] == [1, 2]
    assert [r["parent"] for r in runs[:2]] == [None, 1]  # the second warm-started
    assert version >= 2, (version, runs)
