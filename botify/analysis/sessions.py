"""Sessions and per-user metrics (reference.md §4, steps 2-3), vectorised with polars."""

from __future__ import annotations

import polars as pl


def sessions(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per finished session: user, arm, start (first timestamp), tracks, time, latency_ms.
    A session closes at each ``last``; rows after a user's final ``last`` are unfinished and
    dropped."""
    is_last = (pl.col("message") == "last").cast(pl.Int64)
    return (
        rows.sort(["user", "arm", "timestamp", "seq"])
        .with_columns(
            (is_last.cum_sum().over(["user", "arm"]) - is_last).alias("session"),
            is_last.sum().over(["user", "arm"]).alias("finished"),
        )
        .filter(pl.col("session") < pl.col("finished"))
        .group_by(["user", "arm", "session"])
        .agg(
            pl.col("timestamp").min().alias("start"),
            pl.len().alias("tracks"),
            pl.col("time").sum().alias("time"),
            (pl.col("latency").sum() * 1000.0).alias("latency_ms"),
        )
    )


def user_metrics(session_rows: pl.DataFrame) -> pl.DataFrame:
    """Per (user, arm): time, sessions, mean_request_latency, mean_tracks_per_session,
    mean_time_per_session."""
    return (
        session_rows.group_by(["user", "arm"])
        .agg(
            pl.col("time").sum().alias("time"),
            pl.len().alias("sessions"),
            pl.col("tracks").sum().alias("tracks"),
            pl.col("latency_ms").sum().alias("latency_ms"),
        )
        .with_columns(
            (pl.col("latency_ms") / pl.col("tracks")).alias("mean_request_latency"),
            (pl.col("tracks") / pl.col("sessions")).alias("mean_tracks_per_session"),
            (pl.col("time") / pl.col("sessions")).alias("mean_time_per_session"),
            pl.col("sessions").cast(pl.Float64),
        )
        .drop("tracks", "latency_ms")
        .sort(["arm", "user"])
    )
