"""Small simulator worlds for tests: the real generator, a tenth of a second to build."""

from __future__ import annotations

from functools import cache

from botify_sim.config import SimConfig, UserConfig, load_config
from botify_sim.world import World, generate_world


def small_config(seed: int = 3, **world: object) -> SimConfig:
    """The committed config (calibrated parameters) at a small size."""
    base = load_config()
    sizes = {"tracks": 3000, "artists": 400, "genres": 8, "users": 300} | world
    return base.model_copy(update={"seed": seed, "world": base.world.model_copy(update=sizes)})


@cache
def small_world(seed: int = 3) -> World:
    return generate_world(small_config(seed))


def user_config(**update: object) -> UserConfig:
    return load_config().user.model_copy(update=update)
