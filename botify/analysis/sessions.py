"""Sessions and per-user metrics, as the course rebuilt them, in columnar form.

Per (user, arm) the rows are sorted by timestamp (ties keep file order) and a session closes
at each ``last``; rows after a group's final ``last`` form an unfinished session, which is
dropped. Every user seen in an arm stays in the user table: a user without a finished
session has ``time = 0`` and ``sessions = 0`` and no value (null) for the per-session and
per-request ratios. This is what the course's pandas code computed, so its numbers match.
"""

from __future__ import annotations

import polars as pl

METRICS = (
    "time",
    "sessions",
    "mean_request_latency",
    "mean_tracks_per_session",
    "mean_time_per_session",
)
KEYS = ["user", "arm"]


def build_sessions(log: pl.DataFrame) -> pl.DataFrame:
    """Finished sessions: ``user, arm, start, tracks, time, latency_ms``."""
    is_last = (pl.col("message") == "last").cast(pl.UInt32)
    return (
        log.sort([*KEYS, "timestamp"], maintain_order=True)
        # A session's id is the number of `last` rows before it; since rows are grouped by
        # (user, arm), the id plus the keys identifies one session.
        .with_columns(session=is_last.cum_sum() - is_last, closes=is_last)
        .group_by([*KEYS, "session"], maintain_order=True)
        .agg(
            start=pl.col("timestamp").first(),
            tracks=pl.len(),
            time=pl.col("time").sum(),
            latency_ms=(pl.col("latency") * 1000.0).sum(),
            finished=pl.col("closes").max(),
        )
        .filter(pl.col("finished") == 1)
        .drop("session", "finished")
    )


def user_metrics(log: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, arm) seen in ``log``, with the five course metrics."""
    totals = sessions.group_by(KEYS, maintain_order=True).agg(
        sessions=pl.len(),
        tracks=pl.col("tracks").sum(),
        time=pl.col("time").sum(),
        latency_ms=pl.col("latency_ms").sum(),
    )
    has = pl.col("sessions") > 0
    return (
        log.select(KEYS)
        .unique()
        .join(totals, on=KEYS, how="left")
        .with_columns(
            pl.col("sessions", "tracks").fill_null(0),
            pl.col("time", "latency_ms").fill_null(0.0),
        )
        .with_columns(
            mean_request_latency=pl.when(has).then(pl.col("latency_ms") / pl.col("tracks")),
            mean_tracks_per_session=pl.when(has).then(pl.col("tracks") / pl.col("sessions")),
            mean_time_per_session=pl.when(has).then(pl.col("time") / pl.col("sessions")),
        )
        .with_columns(pl.col("sessions").cast(pl.Float64))
        .sort(KEYS)
    )
