"""Worlds on disk: built once per (seed, config, catalog) under a cache root, reused after."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from botify.catalog import load_catalog
from botify_sim.config import SimConfig
from botify_sim.world import World, generate_world, load_world, save_world, world_from_catalog


def world_key(config: SimConfig, catalog: Path | None = None) -> str:
    # The catalog by content, not by path: an edited file gets a new world.
    digest = hashlib.sha256(catalog.read_bytes()).hexdigest() if catalog else None
    blob = json.dumps({"config": config.model_dump(), "catalog": digest}, sort_keys=True)
    return f"seed{config.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def ensure_world(root: Path, config: SimConfig, catalog: Path | None = None) -> tuple[Path, World]:
    """The world for this config under ``root``, generated (or built on ``catalog``) if absent."""
    directory = root / world_key(config, catalog)
    if (directory / "manifest.json").exists():
        return directory, load_world(directory)
    world = world_from_catalog(load_catalog(catalog), config) if catalog else generate_world(config)
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    save_world(world, tmp)
    try:
        tmp.rename(directory)  # readers never see half a world
    except OSError:
        shutil.rmtree(tmp)  # another process got there first: its world is the same
    return directory, world
