"""Learning over a run: windows of sessions per arm, versions going live, freshness bins."""

from __future__ import annotations

import polars as pl
import pytest

from botify.analysis.learning import (
    Histogram,
    Learning,
    arm_labels,
    live_marks,
    relabel,
    session_curves,
)
from botify.analysis.render import line_chart

pytestmark = pytest.mark.unit
T0 = 1_700_000_000_000


def log(sessions: dict[str, list[float]]) -> pl.DataFrame:
    """Per arm, one user per session: a `next` listened for ``time - 1`` then a `last`;
    session k starts at T0 + k seconds."""
    rows = []
    for arm, times in sessions.items():
        for k, time in enumerate(times):
            user = hash((arm, k)) % 10**6
            start = T0 + 1000 * k
            rows.append(("next", start, user, 1.0, arm))
            rows.append(("last", start + 10, user, time - 1.0, arm))
    return pl.DataFrame(
        rows, schema=["message", "timestamp", "user", "time", "arm"], orient="row"
    ).with_columns(latency=pl.lit(0.001))


def test_each_point_is_the_mean_of_a_window_of_one_arms_sessions() -> None:
    frame = log({"C": [2.0, 4.0, 6.0, 8.0, 10.0], "T1": [1.0, 3.0]})
    curves = session_curves(frame, 2, T0)
    # Windows of 2 by start: (2, 4) ends at 1 s, (6, 8) at 3 s; the last holds 1 of 2 (kept).
    assert curves["C"] == [(1.0, 3.0), (3.0, 7.0), (4.0, 10.0)]
    assert curves["T1"] == [(1.0, 2.0)]
    # A short last window under half the size is dropped.
    assert session_curves(frame, 4, T0)["C"] == [(3.0, 5.0)]
    with pytest.raises(ValueError):
        session_curves(frame, 0, T0)


def test_arms_sharing_a_recommender_keep_their_arm_in_the_label() -> None:
    labels = arm_labels({"C": "random", "T1": "affinity", "T2": "random"})
    assert labels == {"C": "random (C)", "T1": "affinity", "T2": "random (T2)"}
    assert relabel({"T1": [(1.0, 2.0)], "T9": []}, labels) == {"affinity": [(1.0, 2.0)], "T9": []}


def test_versions_go_live_when_they_first_serve() -> None:
    served = [
        {"version": 2, "first_served_ms": T0 + 9000},
        {"version": 1, "first_served_ms": T0 + 4000},
    ]
    assert live_marks(served, T0) == [(4.0, 1.0), (9.0, 2.0)]


def test_the_histogram_counts_values_per_bin_from_zero() -> None:
    h = Histogram.of([0.5, 4.99, 5.0, 17.0, -0.1], 5.0)
    assert h.counts == [3, 1, 0, 1] and h.total == 5
    assert Histogram.of([], 5.0).counts == []
    with pytest.raises(ValueError):
        Histogram.of([1.0], 0.0)


def test_the_chart_draws_the_boundary_and_an_oracle_off_the_scale() -> None:
    learning = Learning(
        T0,
        30.0,
        200,
        {"affinity": [(10.0, 3.0), (50.0, 9.0)], "random (C)": [(10.0, 2.0), (50.0, 2.1)]},
        {"affinity": [(12.0, 1.0), (40.0, 2.0)]},
        {"affinity": Histogram(5.0, [0, 3, 1])},
        oracle=60.0,
    )
    chart = line_chart(
        learning.curves, boundary=(30.0, "measured phase →"), ceiling=(60.0, "oracle")
    )
    assert "measured phase" in chart and "oracle 60.0 (off the scale)" in chart
    doc = learning.to_dict()
    assert doc["versions_live"] == {"affinity": [[12.0, 1], [40.0, 2]]}
    assert doc["freshness"] == {"affinity": {"bin_s": 5.0, "counts": [0, 3, 1]}}
    assert doc["curves"]["affinity"] == [[10.0, 3.0], [50.0, 9.0]]
