"""Session rebuilding: sort per (user, arm), close at `last`, drop what never closed."""

from __future__ import annotations

import polars as pl
import pytest

from botify.analysis import build_sessions, normalize, user_metrics


def rows(*spec: tuple[int, str, int, float, str]) -> pl.DataFrame:
    """(user, arm, timestamp, time, message) tuples as a normalised log; latency 1 ms."""
    raw = pl.DataFrame(
        {
            "message": [s[4] for s in spec],
            "timestamp": [s[2] for s in spec],
            "user": [s[0] for s in spec],
            "time": [s[3] for s in spec],
            "latency": [0.001] * len(spec),
            "experiments": [{"E": s[1]} for s in spec],
        }
    )
    frame, excluded, _ = normalize(raw, "E")
    assert excluded == 0
    return frame


def test_unfinished_trailing_session_is_dropped() -> None:
    log = rows((1, "C", 1, 1.0, "next"), (1, "C", 2, 0.5, "last"), (1, "C", 3, 1.0, "next"))
    sessions = build_sessions(log)
    assert sessions.select("tracks", "time").rows() == [(2, 1.5)]


def test_several_sessions_per_user_close_at_each_last_in_timestamp_order() -> None:
    log = rows(
        (1, "C", 40, 0.0, "last"),  # the file is not in time order
        (1, "C", 10, 1.0, "next"),
        (1, "C", 30, 1.0, "next"),
        (1, "C", 20, 0.5, "last"),
        (1, "C", 35, 0.25, "next"),
    )
    sessions = build_sessions(log).sort("start")
    assert sessions.select("start", "tracks", "time").rows() == [(10, 2, 1.5), (30, 3, 1.25)]
    assert sessions["latency_ms"].to_list() == pytest.approx([2.0, 3.0])


def test_a_user_in_two_arms_gets_separate_sessions_per_arm() -> None:
    log = rows(
        (7, "C", 1, 1.0, "next"),
        (7, "T1", 2, 1.0, "next"),
        (7, "C", 3, 0.5, "last"),
        (7, "T1", 4, 0.2, "last"),
    )
    sessions = build_sessions(log).sort("arm")
    assert sessions.select("user", "arm", "tracks", "time").rows() == [
        (7, "C", 2, 1.5),
        (7, "T1", 2, 1.2),
    ]


def test_unfinished_session_of_one_user_does_not_leak_into_the_next() -> None:
    log = rows((1, "C", 1, 1.0, "next"), (2, "C", 2, 1.0, "next"), (2, "C", 3, 0.5, "last"))
    assert build_sessions(log).select("user", "tracks").rows() == [(2, 2)]


def test_user_metrics_follow_the_course_definitions() -> None:
    log = rows(
        (1, "C", 1, 1.0, "next"),
        (1, "C", 2, 0.5, "last"),
        (1, "C", 3, 1.0, "next"),
        (1, "C", 4, 0.3, "next"),
        (1, "C", 5, 0.2, "last"),
        (2, "C", 6, 1.0, "next"),  # never finishes
    )
    metrics = user_metrics(log, build_sessions(log)).to_dicts()
    one, two = metrics
    assert one["time"] == pytest.approx(3.0) and one["sessions"] == 2
    assert one["mean_tracks_per_session"] == pytest.approx(2.5)
    assert one["mean_time_per_session"] == pytest.approx(1.5)
    assert one["mean_request_latency"] == pytest.approx(1.0)  # ms per request
    assert (two["time"], two["sessions"]) == (0.0, 0.0)
    assert two["mean_time_per_session"] is None and two["mean_request_latency"] is None


def test_equal_timestamps_keep_file_order() -> None:
    log = rows((1, "C", 5, 1.0, "next"), (1, "C", 5, 0.5, "last"), (1, "C", 5, 1.0, "next"))
    assert build_sessions(log).select("tracks", "time").rows() == [(2, 1.5)]
