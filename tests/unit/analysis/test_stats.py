"""The statistics beyond the course: SRM, Holm, delta method, CUPED; and Welch's edges."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from botify.analysis import analyze, load_log
from botify.analysis.stats import delta_method_relative, holm, sample_ratio, welch
from tests.unit.analysis.logs import EXPERIMENT, original_log, write_jsonl


def test_srm_flags_a_skewed_split_in_a_log(tmp_path: Path) -> None:
    rows = original_log(seed=11, users=2000, arms=("C", "T1"), weights=(0.6, 0.4))
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    assert report.srm.mismatch and report.srm.p_value < 1e-6


def test_srm_passes_an_even_split(tmp_path: Path) -> None:
    rows = original_log(seed=12, users=2000, arms=("C", "T1"))
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    assert not report.srm.mismatch


def test_srm_counts_an_arm_missing_from_the_log_as_empty(tmp_path: Path) -> None:
    rows = original_log(seed=13, arms=("C", "T1", "T2"))
    rows = [r for r in rows if r["experiments"].get(EXPERIMENT) != "T1"]  # type: ignore[union-attr]
    report = analyze(load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT))
    assert report.srm.counts["T1"] == 0 and report.srm.mismatch


def test_sample_ratio_matches_the_chi_square_by_hand() -> None:
    check = sample_ratio({"C": 520, "T1": 480})
    assert check.chi2 == pytest.approx((20**2 + 20**2) / 500)
    assert not check.mismatch


def test_holm_is_monotonic_bounded_and_never_below_the_raw_p() -> None:
    rng = random.Random(0)
    for _ in range(200):
        raw = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        adjusted = holm(raw)
        assert all(a >= p and a <= 1.0 for a, p in zip(adjusted, raw, strict=True))
        order = sorted(range(len(raw)), key=raw.__getitem__)
        ranked = [adjusted[i] for i in order]
        assert ranked == sorted(ranked)


def test_holm_on_a_worked_example_and_with_nan() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.02, float("nan")])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


def test_delta_method_is_wider_than_the_course_interval_when_the_control_is_noisy() -> None:
    rng = np.random.default_rng(0)
    control, treatment = rng.normal(10, 8, 400), rng.normal(12, 8, 400)
    w = welch(treatment, control)
    _, course_lo, course_hi = w.relative()
    effect, lo, hi = delta_method_relative(treatment, control)
    assert effect == pytest.approx((treatment.mean() / control.mean() - 1) * 100)
    assert hi - lo > course_hi - course_lo


def test_welch_with_too_few_users_gives_nan_not_significant() -> None:
    w = welch(np.array([1.0]), np.array([1.0, 2.0, 3.0]))
    assert math.isnan(w.ci) and not w.significant


def stable_users_log(lift: float, seed: int = 1) -> list[dict[str, object]]:
    """Users with a stable taste, before and after 1_000_000 ms; T1 gains ``lift`` after."""
    rng = random.Random(seed)
    rows = []
    for user in range(600):
        arm = "C" if user % 2 else "T1"
        taste = rng.uniform(0.1, 0.8)  # a stable per-user trait: what the covariate captures
        for half in (0, 1):
            clock = 1_000_000 * half + user * 100
            boost = lift if half and arm == "T1" else 0.0
            for _session in range(3):
                for i in range(4):
                    clock += 1
                    listened = min(1.0, max(0.0, rng.gauss(taste + boost, 0.1)))
                    rows.append(
                        {
                            "message": "last" if i == 3 else "next",
                            "timestamp": clock,
                            "user": user,
                            "time": round(listened, 2),
                            "latency": 0.001,
                            "experiments": {EXPERIMENT: arm},
                        }
                    )
    return rows


def cuped_row(rows: list[dict[str, object]], tmp_path: Path):  # type: ignore[no-untyped-def]
    log = load_log(write_jsonl(rows, tmp_path / "data.json"), EXPERIMENT)
    report = analyze(log, cuped=True, cuped_split=1_000_000)
    assert report.cuped is not None and report.cuped_split == 1_000_000
    return next(c for c in report.cuped if c.metric == "mean_time_per_session")


def test_cuped_removes_most_variance_when_users_are_stable(tmp_path: Path) -> None:
    row = cuped_row(stable_users_log(lift=0.0), tmp_path)
    assert row.variance_reduction > 0.5 and 0.5 < row.theta < 1.5
    assert abs(row.effect) < 3  # no effect simulated; the interval is about ±1 %


def test_cuped_finds_a_lift_that_starts_at_the_split(tmp_path: Path) -> None:
    row = cuped_row(stable_users_log(lift=0.05), tmp_path)
    # 4 listens × 0.05 per session over a control mean of about 1.8
    assert row.significant and 8 < row.effect < 14
