from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from botify_sim.config import DEFAULT_CONFIG, SimConfig, load_config


def test_committed_config_holds_the_course_user_model() -> None:
    c = load_config()
    assert (c.user.gamma, c.user.budget, c.user.nearest) == (0.8, 5, 10)
    assert (c.user.bias_low, c.user.bias_high) == (0.0, 10.0)
    assert (c.user.sharpness_low, c.user.sharpness_high) == (1.0, 2.0)
    assert c.user.max_recommendations == 200
    assert (c.world.tracks, c.world.users, c.world.interests) == (50_000, 10_000, 3)


def test_config_is_frozen_and_rejects_unknown_keys(tmp_path: Path) -> None:
    c = load_config()
    with pytest.raises(pydantic.ValidationError):
        c.world.scale = 1.0  # type: ignore[misc]
    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_CONFIG.read_text().replace("gamma = 0.8", "gamma = 0.8\ngama = 1"))
    with pytest.raises(pydantic.ValidationError):
        load_config(bad)


def test_model_defaults_mirror_the_committed_file() -> None:
    assert SimConfig() == load_config()


def test_world_overrides() -> None:
    assert load_config(tracks=100, artists=10).world.tracks == 100
