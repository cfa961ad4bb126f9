"""The simulator's settings: one frozen model loaded from ``config.toml``.

The defaults below mirror config.toml (a test keeps them equal); the file is what runs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_CONFIG = Path(__file__).with_name("config.toml")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WorldConfig(_Frozen):
    tracks: int = Field(50_000, ge=10)
    artists: int = Field(10_000, ge=1)
    genres: int = Field(24, ge=1)
    users: int = Field(10_000, ge=1)
    interests: int = Field(3, ge=1)
    dim: int = Field(32, ge=2)
    artist_size_exponent: float = 0.9
    popularity_exponent: float = 1.0
    genre_weight: float = 2.0
    artist_weight: float = 0.7
    noise_weight: float = 1.318
    scale: float = Field(2.892, gt=0)
    mainstream_weight: float = Field(3.75, ge=0)
    mainstream_power: float = Field(16.0, gt=0)


class UserConfig(_Frozen):
    gamma: float = Field(0.8, gt=0, le=1)
    budget: int = Field(5, ge=1)
    max_recommendations: int = Field(200, ge=1)
    nearest: int = Field(10, ge=1)
    bias_low: float = 0.0
    bias_high: float = 10.0
    sharpness_low: float = Field(1.0, gt=0)
    sharpness_high: float = Field(2.0, gt=0)


class SimConfig(_Frozen):
    seed: int = 42
    world: WorldConfig = WorldConfig()
    user: UserConfig = UserConfig()


def load_config(path: Path | str = DEFAULT_CONFIG, **world_overrides: object) -> SimConfig:
    config = SimConfig.model_validate(tomllib.loads(Path(path).read_text()))
    if world_overrides:  # validated: an unknown or out-of-range parameter is an error
        world = WorldConfig.model_validate({**config.world.model_dump(), **world_overrides})
        config = config.model_copy(update={"world": world})
    return config
