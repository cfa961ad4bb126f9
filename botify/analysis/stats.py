"""The course table (Welch intervals over users) and the checks beside it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl
from scipy import stats as st

from botify.analysis.log import load_log
from botify.analysis.sessions import sessions, user_metrics
from botify.errors import InvalidRequestError

METRICS = (
    "time",
    "sessions",
    "mean_request_latency",
    "mean_tracks_per_session",
    "mean_time_per_session",
)
COURSE_KEYS = (
    "treatment",
    "metric",
    "effect",
    "upper",
    "lower",
    "control_mean",
    "treatment_mean",
    "significant",
)
ALPHA = 0.05


@dataclass(frozen=True)
class Row:
    """One (treatment, metric) comparison. The first eight fields are the course's table."""

    treatment: str
    metric: str
    effect: float
    upper: float
    lower: float
    control_mean: float
    treatment_mean: float
    significant: bool
    p_value: float = math.nan
    p_holm: float = math.nan
    significant_holm: bool = False
    rel_lower: float = math.nan  # delta-method interval of the relative effect, percent
    rel_upper: float = math.nan
    cuped_effect: float | None = None
    cuped_lower: float | None = None
    cuped_upper: float | None = None

    def course(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in COURSE_KEYS}


@dataclass(frozen=True)
class ArmSummary:
    arm: str
    users: int
    sessions: int
    mean_time_per_session: float
    mean_tracks_per_session: float


@dataclass(frozen=True)
class SampleRatio:
    users: dict[str, int]
    chi2: float
    p_value: float
    mismatch: bool  # p < 0.001, the usual SRM threshold


@dataclass(frozen=True)
class AnalysisResult:
    experiment: str
    control: str
    arms: list[ArmSummary]
    rows: list[Row]
    srm: SampleRatio
    rows_without_arm: int
    session_times: dict[str, list[float]] = field(repr=False, default_factory=dict)

    def table(self) -> list[dict[str, object]]:
        """The course table: a list of objects with exactly the course's keys."""
        return [r.course() for r in self.rows]

    def to_dict(self) -> dict[str, object]:
        return {
            "experiment": self.experiment,
            "control": self.control,
            "arms": [asdict(a) for a in self.arms],
            "table": self.table(),
            "extended": [asdict(r) for r in self.rows],
            "srm": asdict(self.srm),
            "rows_without_arm": self.rows_without_arm,
        }


def welch(c: np.ndarray, t: np.ndarray) -> tuple[float, float, float, float]:
    """Δ, the 95 % half-width, the Welch-Satterthwaite dof and the two-sided p-value."""
    vc, vt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    delta = float(t.mean() - c.mean())
    se = math.sqrt(vc + vt)
    if se == 0:
        return delta, 0.0, math.inf, 0.0 if delta else 1.0
    dof = (vc + vt) ** 2 / (vc**2 / (len(c) - 1) + vt**2 / (len(t) - 1))
    half = float(st.t.ppf(1 - ALPHA / 2, dof)) * se
    p = float(2 * st.t.sf(abs(delta) / se, dof))
    return delta, half, dof, p


def relative_interval(c: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    """Delta-method 95 % interval of mean_T/mean_C − 1, counting the control mean's noise."""
    mc, mt = c.mean(), t.mean()
    var = t.var(ddof=1) / len(t) / mc**2 + mt**2 * c.var(ddof=1) / len(c) / mc**4
    z = st.norm.ppf(1 - ALPHA / 2)
    r = mt / mc - 1
    return float((r - z * math.sqrt(var)) * 100), float((r + z * math.sqrt(var)) * 100)


def holm(p_values: list[float]) -> list[float]:
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _cuped(users: pl.DataFrame, pre: pl.DataFrame, metric: str) -> pl.DataFrame:
    """metric − θ·(pre − mean(pre)), θ pooled over arms; users with no pre-period sessions
    take the pooled mean as their covariate (so they are left unadjusted)."""
    joined = users.join(
        pre.select("user", "arm", pl.col(metric).alias("pre")), on=["user", "arm"], how="left"
    )
    mean_pre = joined["pre"].mean()
    joined = joined.with_columns(pl.col("pre").fill_null(mean_pre))
    x, y = joined["pre"].to_numpy(), joined[metric].to_numpy()
    var = x.var(ddof=1)
    theta = 0.0 if var == 0 or not np.isfinite(var) else float(np.cov(x, y, ddof=1)[0, 1] / var)
    return joined.with_columns((pl.col(metric) - theta * (pl.col("pre") - x.mean())).alias(metric))


def analyze_rows(
    rows: pl.DataFrame,
    experiment: str,
    control: str = "C",
    cuped: bool = False,
    without_arm: int = 0,
) -> AnalysisResult:
    all_sessions = sessions(rows)
    users = user_metrics(all_sessions)
    arms = sorted(users["arm"].unique().to_list(), key=lambda a: (a != control, len(a), a))
    if control not in arms:
        raise InvalidRequestError(
            f"control arm {control!r} has no finished sessions in experiment {experiment!r} "
            f"(arms: {', '.join(arms) or 'none'})"
        )
    pre = None
    if cuped:
        mid = (rows["timestamp"].min() + rows["timestamp"].max()) / 2  # type: ignore[operator]
        pre = user_metrics(all_sessions.filter(pl.col("start") < mid))
    by_arm = {a: users.filter(pl.col("arm") == a) for a in arms}
    out: list[Row] = []
    for metric in METRICS:
        c = by_arm[control][metric].to_numpy()
        adjusted = _cuped(users, pre, metric) if pre is not None else None
        metric_rows = []
        for arm in arms[1:]:
            t = by_arm[arm][metric].to_numpy()
            if len(c) < 2 or len(t) < 2:
                continue
            delta, half, _, p = welch(c, t)
            mc = float(c.mean())
            rl, ru = relative_interval(c, t)
            extra: dict[str, float | None] = {}
            if adjusted is not None:
                ca = adjusted.filter(pl.col("arm") == control)[metric].to_numpy()
                ta = adjusted.filter(pl.col("arm") == arm)[metric].to_numpy()
                d2, h2, _, _ = welch(ca, ta)
                extra = {
                    "cuped_effect": d2 / mc * 100,
                    "cuped_lower": (d2 - h2) / mc * 100,
                    "cuped_upper": (d2 + h2) / mc * 100,
                }
            lower, upper = (delta - half) / mc * 100, (delta + half) / mc * 100
            metric_rows.append(
                Row(
                    treatment=arm,
                    metric=metric,
                    effect=delta / mc * 100,
                    upper=upper,
                    lower=lower,
                    control_mean=mc,
                    treatment_mean=float(t.mean()),
                    significant=bool(lower > 0 or upper < 0),
                    p_value=p,
                    rel_lower=rl,
                    rel_upper=ru,
                    **extra,  # type: ignore[arg-type]
                )
            )
        adjusted_p = holm([r.p_value for r in metric_rows]) if metric_rows else []
        for r, ph in zip(metric_rows, adjusted_p, strict=True):
            out.append(Row(**{**asdict(r), "p_holm": ph, "significant_holm": ph < ALPHA}))
    counts = {a: by_arm[a].height for a in arms}
    chi2, p_srm = st.chisquare(list(counts.values())) if len(counts) > 1 else (0.0, 1.0)
    summary = [
        ArmSummary(
            a,
            by_arm[a].height,
            int(by_arm[a]["sessions"].sum()),
            float(all_sessions.filter(pl.col("arm") == a)["time"].mean() or 0.0),
            float(all_sessions.filter(pl.col("arm") == a)["tracks"].mean() or 0.0),
        )
        for a in arms
    ]
    times = {a: all_sessions.filter(pl.col("arm") == a)["time"].to_list() for a in arms}
    return AnalysisResult(
        experiment,
        control,
        summary,
        out,
        SampleRatio(counts, float(chi2), float(p_srm), bool(p_srm < 0.001)),
        without_arm,
        times,
    )


def analyze(path: str, experiment: str, control: str = "C", cuped: bool = False) -> AnalysisResult:
    rows, without = load_log(path, experiment)
    if rows.height == 0:
        raise InvalidRequestError(f"no rows carry experiment {experiment!r}")
    return analyze_rows(rows, experiment, control, cuped, without)
