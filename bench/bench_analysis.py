"""Benchmark the A/B analysis against the course's pandas method on one generated log.

Generates a deterministic original-format botify log (JSON lines, seeded numpy), then times,
side by side in one run: botify.analysis (polars) and the course's method (pandas: per
(user, arm) ``groupby.apply`` that walks the timestamp-sorted rows with ``iterrows`` and
closes a session at each ``last``). Optionally also the same method with ``itertuples``,
a fairer pandas baseline. Checks that every table cell agrees and prints times and ratios.

    python bench/bench_analysis.py [--rows 1000000] [--seed 0] [--itertuples]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from rich.console import Console
from rich.table import Table
from scipy import stats

from botify.analysis import METRICS, analyze, load_log
from botify.experiments import ExperimentSplit

EXPERIMENT = "RECOMMENDERS"
console = Console()


# ---- the log -------------------------------------------------------------------------------


def generate_log(path: Path, rows: int, seed: int, users: int = 10_000) -> None:
    """Original-format rows; users' sessions follow each other in time, and the log is cut
    at ``rows`` rows in time order, so the sessions running at the cut stay unfinished."""
    rng = np.random.default_rng(seed)
    split, aa = ExperimentSplit(EXPERIMENT, 3), ExperimentSplit("AA", 2)
    arm_of_user = np.array([split.group(u) for u in range(users)])
    aa_of_user = np.array([aa.arm(u) for u in range(users)])
    n_sessions = int(rows / 6.5 * 1.25)
    user = np.sort(rng.integers(0, users, n_sessions))
    group = arm_of_user[user]
    # Longer sessions in T1 (+15 %) and T2 (+5 %): lengths 1 + geometric.
    mean_len = 6.0 * np.array([1.0, 1.15, 1.05])[group]
    length = 1 + rng.geometric(1 / mean_len)
    row_session = np.repeat(np.arange(n_sessions), length)
    first = np.r_[0, np.cumsum(length)[:-1]]
    position = np.arange(len(row_session)) - first[row_session]
    gaps = rng.integers(1_000, 240_000, len(row_session))
    gaps[position == 0] = rng.integers(600_000, 86_400_000, n_sessions)
    # Per-user clocks: cumulative gaps within each user, from a random offset.
    row_user = user[row_session]
    clock = np.cumsum(gaps)
    user_first_row = np.searchsorted(row_user, np.arange(users))
    valid = user_first_row < len(row_user)
    base = np.zeros(users, dtype=np.int64)
    base[valid] = clock[user_first_row[valid]] - gaps[user_first_row[valid]]
    offset = rng.integers(0, 86_400_000, users)
    timestamp = 1_700_000_000_000 + offset[row_user] + clock - base[row_user]
    lift = np.array([0.0, 0.08, 0.03])[group][row_session]
    listened = np.clip(rng.beta(2, 2.5, len(row_session)) + lift, 0, 1).round(2)
    listened[position == 0] = 1.0
    is_last = position == (length[row_session] - 1)
    track = rng.integers(0, 50_000, len(row_session))
    recommendation = rng.integers(0, 50_000, len(row_session)).astype(float)
    recommendation[is_last] = np.nan
    frame = (
        pl.DataFrame(
            {
                "message": np.where(is_last, "last", "next"),
                "timestamp": timestamp,
                "user": row_user,
                "track": track,
                "time": listened,
                "latency": rng.lognormal(np.log(0.0005), 0.4, len(row_session)).round(6),
                "recommendation": recommendation,
                "AA": aa_of_user[row_user],
                EXPERIMENT: np.array(["C", "T1", "T2"])[group][row_session],
            }
        )
        .with_columns(pl.col("recommendation").fill_nan(None).cast(pl.Int64))
        .sort("timestamp", "user")
        .head(rows)
        .select(
            "message", "timestamp", "user", "track", "time", "latency", "recommendation",
            experiments=pl.struct("AA", EXPERIMENT),
        )
    )  # fmt: skip
    if frame.height < rows:
        raise RuntimeError(f"generated {frame.height} rows, fewer than {rows}")
    frame.write_ndjson(path)


# ---- the course's method, as its notebook did it ---------------------------------------------


def course_load(path: Path) -> pd.DataFrame:
    data = pd.read_json(path, lines=True)
    data["treatment"] = data["experiments"].map(lambda e: e.get(EXPERIMENT))
    return data.dropna(subset=["treatment"])


def sessions_iterrows(rows: pd.DataFrame) -> list[dict[str, float]]:
    out, current = [], None
    for _, row in rows.iterrows():
        if current is None:
            current = {"timestamp": row["timestamp"], "tracks": 0, "time": 0.0, "latency": 0.0}
        current["tracks"] += 1
        current["time"] += row["time"]
        current["latency"] += row["latency"] * 1000
        if row["message"] == "last":
            out.append(current)
            current = None
    return out


def sessions_itertuples(rows: pd.DataFrame) -> list[dict[str, float]]:
    out, current = [], None
    for row in rows.itertuples(index=False):
        if current is None:
            current = {"timestamp": row.timestamp, "tracks": 0, "time": 0.0, "latency": 0.0}
        current["tracks"] += 1
        current["time"] += row.time
        current["latency"] += row.latency * 1000
        if row.message == "last":
            out.append(current)
            current = None
    return out


def course_table(data: pd.DataFrame, build: Callable[[pd.DataFrame], list]) -> list[dict]:
    columns = ["timestamp", "message", "time", "latency"]
    sessions = (
        data.sort_values("timestamp", kind="stable")
        .groupby(["user", "treatment"])[columns]
        .apply(build)
        .explode()
        .apply(pd.Series)
    )
    users = (
        sessions.reset_index()
        .groupby(["user", "treatment"])
        .agg({"timestamp": "count", "tracks": "sum", "time": "sum", "latency": "sum"})
    )
    users["sessions"] = users["timestamp"]
    users["mean_request_latency"] = users["latency"] / users["tracks"]
    users["mean_tracks_per_session"] = users["tracks"] / users["sessions"]
    users["mean_time_per_session"] = users["time"] / users["sessions"]
    arms = users[list(METRICS)].reset_index().groupby("treatment")[list(METRICS)]
    summary = arms.agg(["count", "mean", "var"])
    control = summary.loc["C"]
    table = []
    for arm, row in summary.iterrows():
        if arm == "C":
            continue
        for metric in METRICS:
            n_c, m_c, v_c = control[metric]
            n_t, m_t, v_t = row[metric]
            se2 = v_c / n_c + v_t / n_t
            dof = se2**2 / ((v_c / n_c) ** 2 / (n_c - 1) + (v_t / n_t) ** 2 / (n_t - 1))
            ci = stats.t.ppf(0.975, dof) * math.sqrt(se2)
            delta = m_t - m_c
            table.append(
                {
                    "treatment": arm,
                    "metric": metric,
                    "effect": delta / m_c * 100,
                    "upper": (delta + ci) / m_c * 100,
                    "lower": (delta - ci) / m_c * 100,
                    "control_mean": m_c,
                    "treatment_mean": m_t,
                    "significant": bool((delta + ci) * (delta - ci) > 0),
                }
            )
    return table


# ---- timing --------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def agree(ours: list[dict], theirs: list[dict]) -> float:
    """Largest relative difference over all numeric cells; raises on a structural mismatch."""
    key = lambda r: (r["treatment"], r["metric"])  # noqa: E731
    mine = {key(r): r for r in ours}
    if set(mine) != {key(r) for r in theirs}:
        raise AssertionError("the two tables have different rows")
    worst = 0.0
    for row in theirs:
        other = mine[key(row)]
        if other["significant"] != row["significant"]:
            raise AssertionError(f"significance differs for {key(row)}")
        for column in ("effect", "upper", "lower", "control_mean", "treatment_mean"):
            a, b = other[column], row[column]
            worst = max(worst, abs(a - b) / max(abs(b), 1e-12))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (best is kept)")
    parser.add_argument("--itertuples", action="store_true", help="also time itertuples")
    parser.add_argument("--log", type=Path, help="write the log here (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.log or Path(tmp) / "data.json"
        with console.status(f"generating {args.rows:,} rows…"):
            _, gen_s = timed(lambda: generate_log(path, args.rows, args.seed))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        console.print(
            f"log: {args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB, sha256 {digest}…, "
            f"generated in {gen_s:.1f} s"
        )

        best: dict[str, float] = {"load": math.inf, "analysis": math.inf}
        for _ in range(args.repeat):
            log, load_s = timed(lambda: load_log(path, EXPERIMENT))
            report, analysis_s = timed(lambda: analyze(log))  # noqa: B023
            best = {"load": min(best["load"], load_s), "analysis": min(best["analysis"], analysis_s)}  # fmt: skip # noqa: E501
        ours = report.to_json()

        results = {"ours (polars)": best}
        methods = [("course (iterrows)", sessions_iterrows)]
        if args.itertuples:
            methods.append(("course (itertuples)", sessions_itertuples))
        data, pandas_load_s = timed(lambda: course_load(path))
        for name, build in methods:
            with console.status(f"running {name}…"):
                theirs, seconds = timed(lambda: course_table(data, build))  # noqa: B023
            worst = agree(ours, theirs)
            console.print(f"{name}: tables agree (largest relative difference {worst:.1e})")
            results[name] = {"load": pandas_load_s, "analysis": seconds}

    ref = results["ours (polars)"]
    table = Table(title=f"A/B analysis of {args.rows:,} rows (seconds; ratio = time / ours)")
    for column in ("method", "load", "analysis", "total", "analysis ratio", "total ratio"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name, r in results.items():
        total, ref_total = r["load"] + r["analysis"], ref["load"] + ref["analysis"]
        table.add_row(
            name,
            f"{r['load']:.2f}",
            f"{r['analysis']:.2f}",
            f"{total:.2f}",
            f"{r['analysis'] / ref['analysis']:.1f}×",
            f"{total / ref_total:.1f}×",
        )
    console.print(table)
    arms = {a.arm: (a.users, a.sessions, round(a.mean_time_per_session, 3)) for a in report.arms}
    console.print(f"arms (users, sessions, mean_time_per_session): {arms}")


if __name__ == "__main__":
    main()
