"""When the trainer retrains, which models a round trains, and whether a new version replaces
the served one: pure rules, so they are tested without a trainer, a store or torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from botify.artifacts import DataWindow
from botify.evaluation import better


def due(
    last_run: float, now: float, new_examples: int, every_s: float, every_examples: int
) -> bool:
    """Retrain after ``every_s`` seconds with something new, or after ``every_examples``."""
    if new_examples <= 0:
        return False
    return now - last_run >= every_s or new_examples >= every_examples


def scheduled(
    models: Sequence[str], every_rounds: Mapping[str, int], round_index: int
) -> list[str]:
    """The models round ``round_index`` (from 0) trains: all of them in the first, then each
    model every ``every_rounds[model]`` rounds (1 when absent). Models that share an
    ``every_rounds`` take turns (the i-th of them in rounds ≡ i mod every_rounds), so no round
    carries all of them and the models trained every round never wait for the whole set."""
    if round_index == 0:
        return list(models)
    out = []
    seen: dict[int, int] = {}
    for name in models:
        every = every_rounds.get(name, 1)
        phase = seen.get(every, 0)
        seen[every] = phase + 1
        if round_index % every == phase % every:
            out.append(name)
    return out


def data_window(frame: pl.DataFrame) -> DataWindow | None:
    """The span of examples a version learned from (``frame`` has a ``timestamp`` column)."""
    if frame.is_empty():
        return None
    first, last = frame["timestamp"].min(), frame["timestamp"].max()
    if not isinstance(first, int) or not isinstance(last, int):
        raise TypeError(f"timestamps are {frame['timestamp'].dtype}, not integers")
    return DataWindow(first, last, len(frame))


def refusal(
    new: Mapping[str, float],
    served: Mapping[str, float] | None,
    key: str,
    tolerance: float,
    z: float,
) -> str | None:
    """Why the version scored ``new`` must not replace the served one scored ``served``
    (judged on ``key``, see ``botify.evaluation.better``), or None when it is promoted. With
    no served version there is nothing to beat."""
    if served is None or better(new, served, key, tolerance, z):
        return None
    return f"{key} {new.get(key)} worse than served {served.get(key)}"
