"""Sample model metas and arrays for the model store's tests."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from botify.artifacts import DataWindow, ModelMeta


def meta(name: str = "contextual", version: int = 1, **changes: Any) -> ModelMeta:
    base = ModelMeta(
        name=name,
        version=version,
        parent=None,
        created_ms=1_700_000_000_000,
        window=DataWindow(first_ms=1, last_ms=2, examples=3),
        metrics={"hr@10": 0.25},
        params={"dim": 8, "lr": 0.01, "layers": [1, 2]},
    )
    return dataclasses.replace(base, **changes)


def arrays(
    n: int = 6, users: int = 3, k: int = 4, d: int = 2, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    neighbours = rng.choice(ids, size=(n, k)).astype(np.int64)
    neighbours[0, -1] = -1  # padding
    return {
        "track_ids": ids,
        "track_neighbours": neighbours,
        "user_ids": np.arange(users, dtype=np.int64),
        "user_top": rng.choice(ids, size=(users, k)).astype(np.int64),
        "context_emb": rng.normal(size=(n, d)).astype(np.float32),
        "track_emb": rng.normal(size=(n, d)).astype(np.float32),
        "user_emb": rng.normal(size=(users, d)).astype(np.float32),
        "track_bias": rng.normal(size=n).astype(np.float32),
        "contextual_weights": rng.normal(size=(3, 3)),  # a model's own extra array
    }


def without(name: str) -> dict[str, np.ndarray]:
    """``arrays()`` without the array ``name``."""
    out = arrays()
    del out[name]
    return out
