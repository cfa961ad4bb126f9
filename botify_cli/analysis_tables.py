"""The terminal's view of an ``AnalysisReport``: rich tables, coloured as the HTML report
(``botify.analysis.render``) is: green or red for the sign of an effect, and a filled cell for
significance (grey when the interval holds 0)."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from botify.analysis.render import arm_label, fmt, is_gain, srm_summary
from botify.analysis.report import COURSE_COLUMNS, AnalysisReport, CourseRow


def course_table(report: AnalysisReport, labels: dict[str, str] | None = None) -> Table:
    table = Table(title=f"experiment {report.experiment}: effects in % of {report.control}")
    for column in COURSE_COLUMNS:
        table.add_column(column, justify="left" if column in ("treatment", "metric") else "right")
    for row in report.rows:
        cells: list[Text | str] = [arm_label(row.treatment, labels), row.metric]
        for value in (row.effect, row.upper, row.lower):
            cells.append(Text(fmt(value, signed=True), style=_sign_style(value)))
        cells += [fmt(row.control_mean), fmt(row.treatment_mean)]
        cells.append(Text(str(row.significant), style=significance_style(row)))
        table.add_row(*cells)
    return table


def arms_table(report: AnalysisReport) -> Table:
    table = Table(title="arms")
    for column in ("arm", "users", "sessions", "mean_time_per_session", "mean_tracks_per_session"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for a in report.arms:
        table.add_row(
            a.arm,
            str(a.users),
            str(a.sessions),
            fmt(a.mean_time_per_session),
            fmt(a.mean_tracks_per_session),
        )
    return table


def extras_table(report: AnalysisReport, labels: dict[str, str] | None = None) -> Table:
    table = Table(title="beyond the course: Welch p, Holm across arms, delta-method relative CI")
    columns = ("treatment", "metric", "n_C", "n_T", "p", "p_holm", "rel_%", "lower", "upper")
    for column in columns:
        table.add_column(column, justify="left" if column in ("treatment", "metric") else "right")
    for e in report.extras:
        holm = Text(fmt(e.p_holm, digits=3), style="green" if e.significant_holm else "")
        table.add_row(
            arm_label(e.treatment, labels),
            e.metric,
            str(e.n_control),
            str(e.n_treatment),
            fmt(e.p_value, digits=3),
            holm,
            fmt(e.delta_effect, True),
            fmt(e.delta_lower, True),
            fmt(e.delta_upper, True),
        )
    return table


def cuped_table(report: AnalysisReport) -> Table | None:
    if report.cuped is None:
        return None
    table = Table(title=f"CUPED after split {report.cuped_split} (covariate: same metric before)")
    for column in ("treatment", "metric", "effect", "lower", "upper", "significant", "var_red"):
        table.add_column(column, justify="left" if column in ("treatment", "metric") else "right")
    for c in report.cuped:
        table.add_row(
            c.treatment,
            c.metric,
            Text(fmt(c.effect, True), style=_sign_style(c.effect)),
            fmt(c.lower, True),
            fmt(c.upper, True),
            str(c.significant),
            f"{c.variance_reduction:.1%}" if not math.isnan(c.variance_reduction) else "nan",
        )
    return table


def srm_text(report: AnalysisReport) -> Text:
    return Text(srm_summary(report), style="bold red" if report.srm.mismatch else "")


def significance_style(row: CourseRow) -> str:
    """Green fill for a significant gain, red for a significant loss, grey otherwise."""
    if not row.significant:
        return "bold white on grey50"
    return "bold white on green" if is_gain(row) else "bold white on red"


def _sign_style(value: float) -> str:
    if value is None or math.isnan(value):
        return "dim"
    return "red" if value < 0 else "green"
