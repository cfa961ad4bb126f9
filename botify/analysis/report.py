"""``analyze``: from a normalised log to the course table and the extras beside it."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botify.analysis.cuped import CupedRow, cuped_rows, default_split
from botify.analysis.load import AnalysisInputError, ArmLog, load_log
from botify.analysis.sessions import METRICS, build_sessions, user_metrics
from botify.analysis.stats import (
    SampleRatioCheck,
    delta_method_relative,
    holm,
    sample_ratio,
    welch,
)

COURSE_COLUMNS = (
    "treatment",
    "metric",
    "effect",
    "upper",
    "lower",
    "control_mean",
    "treatment_mean",
    "significant",
)
ARM_NAME = re.compile(r"^(C|T([0-9]+))$")


@dataclass(frozen=True)
class ArmSummary:
    """Users seen in the arm, finished sessions, and the arm means over users."""

    arm: str
    users: int
    sessions: int
    mean_time_per_session: float
    mean_tracks_per_session: float


@dataclass(frozen=True)
class CourseRow:
    """One row of the course table; effects in percent of the control mean."""

    treatment: str
    metric: str
    effect: float
    upper: float
    lower: float
    control_mean: float
    treatment_mean: float
    significant: bool


@dataclass(frozen=True)
class RowExtras:
    """What the course lacked, for the same (treatment, metric)."""

    treatment: str
    metric: str
    n_control: int
    n_treatment: int
    dof: float
    p_value: float
    p_holm: float  # Holm across the treatment arms, per metric
    significant_holm: bool
    delta_effect: float  # mean_T/mean_C − 1 in percent, delta-method interval
    delta_lower: float
    delta_upper: float


@dataclass(frozen=True)
class AnalysisReport:
    experiment: str
    control: str
    alpha: float
    rows_used: int
    rows_excluded: int
    arms: list[ArmSummary]
    rows: list[CourseRow]
    srm: SampleRatioCheck
    extras: list[RowExtras]
    cuped: list[CupedRow] | None = None
    cuped_split: int | None = None
    session_times: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # Rows skipped as bad (unreadable, incomplete, out of the event schema's bounds).
    rows_bad: int = 0

    def to_json(self) -> list[dict[str, Any]]:
        """The course table: exactly the course keys, effects in percent, NaN as null."""
        return [{k: _clean(getattr(row, k)) for k in COURSE_COLUMNS} for row in self.rows]

    def table(self) -> list[dict[str, Any]]:
        """Same as ``to_json`` (the name ``botify_cli.demo`` uses)."""
        return self.to_json()

    def to_dict(self) -> dict[str, Any]:
        """Everything but the raw session times, JSON-ready; ``extended`` holds the extras."""
        cleaned: dict[str, Any] = _clean(
            {
                "experiment": self.experiment,
                "control": self.control,
                "alpha": self.alpha,
                "rows_used": self.rows_used,
                "rows_excluded": self.rows_excluded,
                "rows_bad": self.rows_bad,
                "arms": [asdict(a) for a in self.arms],
                "table": self.to_json(),
                "srm": {
                    "counts": self.srm.counts,
                    "chi2": self.srm.chi2,
                    "p_value": self.srm.p_value,
                    "threshold": self.srm.threshold,
                    "mismatch": self.srm.mismatch,
                },
                "extended": [asdict(e) for e in self.extras],
                "cuped": None if self.cuped is None else [asdict(c) for c in self.cuped],
                "cuped_split": self.cuped_split,
            }
        )
        return cleaned


def analyze(
    log: ArmLog,
    control: str = "C",
    metrics: Sequence[str] = METRICS,
    alpha: float = 0.05,
    cuped: bool = False,
    cuped_split: int | None = None,
) -> AnalysisReport:
    """The course's A/B analysis (reference §4) plus SRM, delta method, Holm and CUPED."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise AnalysisInputError(f"unknown metric(s) {', '.join(unknown)}; known: {METRICS}")
    frame = log.frame
    arms = sorted(frame["arm"].unique().to_list(), key=_arm_order)
    if control not in arms:
        raise AnalysisInputError(
            f"no rows for control arm {control!r} in experiment {log.experiment!r} "
            f"(arms: {', '.join(arms) or 'none'})"
        )
    treatments = [a for a in arms if a != control]
    if not treatments:
        raise AnalysisInputError(f"experiment {log.experiment!r} has only the arm {control!r}")

    sessions = build_sessions(frame)
    users = user_metrics(frame, sessions)
    by_arm = {arm: part for (arm,), part in users.partition_by("arm", as_dict=True).items()}
    values = {
        (arm, m): part[m].drop_nulls().to_numpy() for arm, part in by_arm.items() for m in metrics
    }

    table, extras = [], []
    for metric in metrics:
        control_values = values[(control, metric)]
        tests = [welch(values[(arm, metric)], control_values, alpha) for arm in treatments]
        adjusted = holm([w.p_value for w in tests])
        for arm, w, p_holm in zip(treatments, tests, adjusted, strict=True):
            effect, lower, upper = w.relative()
            table.append(
                CourseRow(
                    arm, metric, effect, upper, lower, w.control_mean, w.treatment_mean,
                    w.significant,
                )
            )  # fmt: skip
            d_effect, d_lower, d_upper = delta_method_relative(
                values[(arm, metric)], control_values, alpha
            )
            extras.append(
                RowExtras(
                    arm, metric, len(control_values), len(values[(arm, metric)]), w.dof,
                    w.p_value, p_holm, bool(p_holm < alpha), d_effect, d_lower, d_upper,
                )
            )  # fmt: skip

    cuped_table, split = None, None
    if cuped:
        split = default_split(frame) if cuped_split is None else cuped_split
        cuped_table = cuped_rows(frame, sessions, control, treatments, list(metrics), split, alpha)

    return AnalysisReport(
        experiment=log.experiment,
        control=control,
        alpha=alpha,
        rows_used=frame.height,
        rows_excluded=log.excluded_rows,
        rows_bad=log.bad_rows,
        arms=[_summary(arm, by_arm[arm]) for arm in arms],
        rows=table,
        srm=sample_ratio(_split_counts(by_arm)),
        extras=extras,
        cuped=cuped_table,
        cuped_split=split,
        session_times={
            arm: part["time"].to_numpy()
            for (arm,), part in sessions.partition_by("arm", as_dict=True).items()
        },
    )


def analyze_file(
    path: Path | str, experiment: str, control: str = "C", cuped: bool = False
) -> AnalysisReport:
    """``load_log`` then ``analyze``: the one call for a log file."""
    return analyze(load_log(Path(path), experiment), control=control, cuped=cuped)


def _summary(arm: str, users: pl.DataFrame) -> ArmSummary:
    return ArmSummary(
        arm=arm,
        users=users.height,
        sessions=int(users["sessions"].sum()),
        mean_time_per_session=_mean(users["mean_time_per_session"]),
        mean_tracks_per_session=_mean(users["mean_tracks_per_session"]),
    )


def _split_counts(by_arm: dict[str, pl.DataFrame]) -> dict[str, int]:
    """Users per arm over the whole split: C, T1 … up to the highest arm seen (gaps count 0)."""
    top = max((_arm_order(a)[0] for a in by_arm if ARM_NAME.match(a)), default=0)
    counts = {("C" if k == 0 else f"T{k}"): 0 for k in range(top + 1)}
    counts.update({arm: part.height for arm, part in by_arm.items()})
    return dict(sorted(counts.items(), key=lambda kv: _arm_order(kv[0])))


def _arm_order(arm: str) -> tuple[int, str]:
    match = ARM_NAME.match(arm)
    if match is None:
        return (10**9, arm)
    return (0 if match.group(2) is None else int(match.group(2)), arm)


def _mean(series: pl.Series) -> float:
    value = series.mean()
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _clean(value: Any) -> Any:
    """NaN and infinities become None; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
