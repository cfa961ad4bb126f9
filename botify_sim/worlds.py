"""Worlds on disk: build once per (seed, config), reuse after (generation takes ~20 s)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from botify.catalog import load_catalog
from botify_sim.config import SimConfig
from botify_sim.world import World, generate_world, load_world, save_world, world_from_catalog


def world_key(config: SimConfig, catalog: Path | None = None) -> str:
    blob = json.dumps(
        {"config": config.model_dump(), "catalog": str(catalog) if catalog else None},
        sort_keys=True,
    )
    return f"seed{config.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def ensure_world(root: Path, config: SimConfig, catalog: Path | None = None) -> tuple[Path, World]:
    """The world for this config under ``root``, generated (or built on ``catalog``) if absent."""
    directory = root / world_key(config, catalog)
    if (directory / "manifest.json").exists():
        return directory, load_world(directory)
    world = world_from_catalog(load_catalog(catalog), config) if catalog else generate_world(config)
    tmp = directory.with_name(directory.name + ".tmp")
    save_world(world, tmp)
    tmp.rename(directory)  # readers never see half a world
    return directory, world
