"""Small original-format botify logs, generated deterministically, and an independent
straightforward implementation of the course's analysis (reference §4) to check against.

The reference implementation uses plain Python loops, ``math`` and ``scipy.stats.t`` only; it
shares no code with ``botify.analysis``.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path

from scipy.stats import t as student_t

EXPERIMENT = "EXP"
START_MS = 1_700_000_000_000


def original_log(
    seed: int = 0,
    users: int = 240,
    arms: tuple[str, ...] = ("C", "T1", "T2"),
    weights: tuple[float, ...] | None = None,
    lift: float = 0.15,
    switchers: float = 0.05,
    unlabelled: int = 7,
) -> list[dict[str, object]]:
    """Rows in the original log shape, shuffled (the analysis must sort them).

    Some users leave a final session unfinished, some have only an unfinished one, a few
    switch arm half-way, and ``unlabelled`` rows carry no arm for ``EXPERIMENT``.
    """
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for user in range(users):
        arm = rng.choices(arms, weights=weights)[0] if weights else arms[user % len(arms)]
        other = arms[(arms.index(arm) + 1) % len(arms)]
        switch = rng.random() < switchers
        boost = lift * arms.index(arm)
        clock = START_MS + rng.randrange(0, 3_600_000)
        n_sessions = rng.randint(0, 5)
        for s in range(n_sessions):
            session_arm = other if switch and s >= n_sessions // 2 else arm
            length = rng.randint(1, 9)
            unfinished = s == n_sessions - 1 and rng.random() < 0.25
            track = rng.randrange(1000)
            for i in range(length):
                last = i == length - 1
                if last and unfinished:
                    break
                clock += rng.randint(1, 40_000)
                listened = 1.0 if i == 0 else round(min(1.0, rng.random() + boost), 2)
                recommendation = None if last else rng.randrange(1000)
                rows.append(
                    {
                        "message": "last" if last else "next",
                        "timestamp": clock,
                        "user": user,
                        "track": track,
                        "time": listened,
                        "latency": round(rng.uniform(0.0002, 0.002), 6),
                        "recommendation": recommendation,
                        "experiments": {"AA": rng.choice(("C", "T1")), EXPERIMENT: session_arm},
                    }
                )
                track = recommendation if recommendation is not None else track
            clock += rng.randint(60_000, 600_000)
    for row in rng.sample(rows, unlabelled):
        row["experiments"] = {"AA": "C"}
    rng.shuffle(rows)
    return rows


def write_jsonl(rows: list[dict[str, object]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


METRICS = (
    "time",
    "sessions",
    "mean_request_latency",
    "mean_tracks_per_session",
    "mean_time_per_session",
)


def reference_users(rows: list[dict[str, object]], experiment: str) -> dict[tuple, dict]:
    """Per (user, arm): the five metrics; None where a user has no finished session."""
    groups: dict[tuple, list] = defaultdict(list)
    for position, row in enumerate(rows):
        arm = row["experiments"].get(experiment)  # type: ignore[union-attr]
        if arm is not None:
            groups[(row["user"], arm)].append((row["timestamp"], position, row))
    users = {}
    for key, items in groups.items():
        items.sort(key=lambda item: (item[0], item[1]))
        finished = []
        tracks = time = latency = 0.0
        for _, _, row in items:
            tracks += 1
            time += row["time"]
            latency += row["latency"] * 1000
            if row["message"] == "last":
                finished.append((tracks, time, latency))
                tracks = time = latency = 0.0
        n = len(finished)
        all_tracks = sum(s[0] for s in finished)
        all_time = sum(s[1] for s in finished)
        all_latency = sum(s[2] for s in finished)
        users[key] = {
            "time": all_time,
            "sessions": float(n),
            "mean_request_latency": all_latency / all_tracks if n else None,
            "mean_tracks_per_session": all_tracks / n if n else None,
            "mean_time_per_session": all_time / n if n else None,
        }
    return users


def _mean_var(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def reference_table(
    rows: list[dict[str, object]], experiment: str, control: str = "C"
) -> list[dict[str, object]]:
    users = reference_users(rows, experiment)
    arms = sorted({arm for _, arm in users})
    table = []
    for arm in arms:
        if arm == control:
            continue
        for metric in METRICS:
            c = [m[metric] for (_, a), m in users.items() if a == control and m[metric] is not None]
            t = [m[metric] for (_, a), m in users.items() if a == arm and m[metric] is not None]
            mean_c, var_c = _mean_var(c)
            mean_t, var_t = _mean_var(t)
            se2 = var_c / len(c) + var_t / len(t)
            dof = se2**2 / (
                (var_c / len(c)) ** 2 / (len(c) - 1) + (var_t / len(t)) ** 2 / (len(t) - 1)
            )
            ci = student_t.ppf(0.975, dof) * math.sqrt(se2)
            delta = mean_t - mean_c
            table.append(
                {
                    "treatment": arm,
                    "metric": metric,
                    "effect": delta / mean_c * 100,
                    "upper": (delta + ci) / mean_c * 100,
                    "lower": (delta - ci) / mean_c * 100,
                    "control_mean": mean_c,
                    "treatment_mean": mean_t,
                    "significant": delta - ci > 0 or delta + ci < 0,
                }
            )
    return table
