"""Learning over a run: each arm's mean time per session in windows of sessions, when each
model version went live, and how fresh the served models were.

Pure functions of the exported events and the trainer's run reports; ``report.html`` draws
them and the demo's ``results.json`` carries them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from botify.analysis.sessions import build_sessions

# (seconds since the run started, value)
Series = list[tuple[float, float]]


def arm_labels(arms: Mapping[str, str]) -> dict[str, str]:
    """Arm -> the name to show: its recommender, with the arm when several arms share it
    (the demo's spare Random arms)."""
    count = Counter(arms.values())
    return {arm: name if count[name] == 1 else f"{name} ({arm})" for arm, name in arms.items()}


def session_curves(frame: pl.DataFrame, window: int, started_ms: int) -> dict[str, Series]:
    """Per arm, the mean time per session of each run of ``window`` consecutive finished
    sessions (by start), at the start of the window's last session. ``frame`` is a log with
    an ``arm`` column (``botify.analysis.load``); a last, shorter window is kept only if it
    holds at least half of ``window`` sessions."""
    if window < 1:
        raise ValueError("the window must hold at least one session")
    sessions = build_sessions(frame).sort(["arm", "start"])
    out: dict[str, Series] = {}
    for (arm,), part in sessions.group_by(["arm"], maintain_order=True):
        blocks = (
            part.with_row_index("i")
            .with_columns(block=pl.col("i") // window)
            .group_by("block", maintain_order=True)
            .agg(n=pl.len(), end=pl.col("start").max(), mean=pl.col("time").mean())
            .filter(pl.col("n") * 2 >= window)
        )
        out[str(arm)] = [
            ((end - started_ms) / 1000.0, float(mean))
            for end, mean in zip(blocks["end"], blocks["mean"], strict=True)
        ]
    return out


@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins of ``width`` from 0: bin i holds [i·width, (i+1)·width)."""

    width: float
    counts: list[int]

    @classmethod
    def of(cls, values: Iterable[float], width: float) -> Histogram:
        if width <= 0:
            raise ValueError("the bin width must be positive")
        bins = Counter(max(0, int(v // width)) for v in values)
        top = max(bins, default=-1)
        return cls(width, [bins.get(i, 0) for i in range(top + 1)])

    @property
    def total(self) -> int:
        return sum(self.counts)

    def to_dict(self) -> dict[str, object]:
        return {"bin_s": self.width, "counts": self.counts}


@dataclass(frozen=True)
class Learning:
    """What the report draws to show learning; times in seconds since ``started_ms``."""

    started_ms: int
    measured_from_s: float | None  # the warm-up/measured boundary (None: no warm-up)
    window: int  # sessions per point of a curve
    curves: dict[str, Series]  # label -> mean time per session
    versions: dict[str, Series] = field(default_factory=dict)  # model -> (went live, version)
    # model -> listens learned per bin of freshness (seconds)
    freshness: dict[str, Histogram] = field(default_factory=dict)
    oracle: float | None = None  # the oracle's mean time per session on the measured episodes

    def to_dict(self) -> dict[str, object]:
        return {
            "started_ms": self.started_ms,
            "measured_from_s": self.measured_from_s,
            "window_sessions": self.window,
            "curves": {k: [[round(t, 3), v] for t, v in s] for k, s in self.curves.items()},
            "versions_live": {
                k: [[round(t, 3), int(v)] for t, v in s] for k, s in self.versions.items()
            },
            "freshness": {k: h.to_dict() for k, h in self.freshness.items()},
            "oracle": self.oracle,
        }


def relabel(curves: Mapping[str, Series], labels: Mapping[str, str]) -> dict[str, Series]:
    """``curves`` keyed by ``labels`` (arms without a label keep their name)."""
    return {labels.get(arm, arm): series for arm, series in curves.items()}


def live_marks(served: Iterable[Mapping[str, int]], started_ms: int) -> Series:
    """(seconds since start, version) for rows of ``freshness.served_versions``."""
    marks = sorted((int(r["first_served_ms"]), int(r["version"])) for r in served)
    return [((ms - started_ms) / 1000.0, float(v)) for ms, v in marks]
