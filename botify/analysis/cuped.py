"""CUPED: the same metric before a split time, as a covariate for the metric after it.

Choice (documented, not magic): the log is cut at ``split`` (default: the middle of its time
range). A finished session belongs to the period its first row falls in; a user is in a
period's population if they have any row in it. Y is the user's metric after the split, X the
same metric before it: users new after the split have X = 0 for ``time`` and ``sessions``;
for the ratio metrics a missing X is filled with the mean of X, so it adjusts nothing.
θ = cov(X, Y)/var(X) over all arms pooled; Y_adj = Y − θ·(X − mean X); then the course's
Welch interval on Y_adj, relative to the control's unadjusted mean of Y.

Honest limit: the adjustment is unbiased only if X is unaffected by the treatment, i.e. the
treatment started at the split (a true pre-period). If the arms already differed before the
split, the estimate is Δ_Y − θ·Δ_X, shrunk towards zero. The figures also describe only
the post-split period, so they are not the course table's whole-log numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from botify.analysis.sessions import KEYS, user_metrics
from botify.analysis.stats import cuped_theta, welch

RATIOS = ("mean_request_latency", "mean_tracks_per_session", "mean_time_per_session")


@dataclass(frozen=True)
class CupedRow:
    treatment: str
    metric: str
    effect: float
    lower: float
    upper: float
    significant: bool
    control_mean: float
    treatment_mean: float
    theta: float
    variance_reduction: float  # 1 − var(Y_adj)/var(Y), pooled over arms


def default_split(log: pl.DataFrame) -> int:
    lo, hi = log.select(lo=pl.col("timestamp").min(), hi=pl.col("timestamp").max()).row(0)
    return (int(lo) + int(hi)) // 2


def cuped_rows(
    log: pl.DataFrame,
    sessions: pl.DataFrame,
    control: str,
    treatments: list[str],
    metrics: list[str],
    split: int,
    alpha: float = 0.05,
) -> list[CupedRow]:
    before = user_metrics(
        log.filter(pl.col("timestamp") < split), sessions.filter(pl.col("start") < split)
    )
    after = user_metrics(
        log.filter(pl.col("timestamp") >= split), sessions.filter(pl.col("start") >= split)
    )
    rows = []
    for metric in metrics:
        paired = after.select(*KEYS, y=pl.col(metric)).join(
            before.select(*KEYS, x=pl.col(metric)), on=KEYS, how="left"
        )
        paired = paired.filter(pl.col("y").is_not_null())
        fill = paired["x"].mean() if metric in RATIOS else 0.0
        paired = paired.with_columns(pl.col("x").fill_null(fill if fill is not None else 0.0))
        y, x = paired["y"].to_numpy(), paired["x"].to_numpy()
        theta = cuped_theta(y, x)
        adjusted = paired.with_columns(y_adj=pl.col("y") - theta * (pl.col("x") - x.mean()))
        var_y = float(np.var(y, ddof=1)) if len(y) > 1 else float("nan")
        var_adj = float(np.var(adjusted["y_adj"].to_numpy(), ddof=1)) if len(y) > 1 else 0.0
        reduction = 1 - var_adj / var_y if var_y > 0 else float("nan")
        by_arm = {
            arm: (part["y"].to_numpy(), part["y_adj"].to_numpy())
            for (arm,), part in adjusted.partition_by("arm", as_dict=True).items()
        }
        empty = (np.array([]), np.array([]))
        c_raw, c_adj = by_arm.get(control, empty)
        for arm in treatments:
            t_raw, t_adj = by_arm.get(arm, empty)
            w = welch(t_adj, c_adj, alpha)
            base = float(np.mean(c_raw)) if len(c_raw) else float("nan")
            scale = 100 / base if base else float("nan")
            rows.append(
                CupedRow(
                    treatment=arm,
                    metric=metric,
                    effect=w.delta * scale,
                    lower=(w.delta - w.ci) * scale,
                    upper=(w.delta + w.ci) * scale,
                    significant=w.significant,
                    control_mean=base,
                    treatment_mean=float(np.mean(t_raw)) if len(t_raw) else float("nan"),
                    theta=theta,
                    variance_reduction=reduction,
                )
            )
    return rows
