"""Draw an ``AnalysisReport`` as one self-contained HTML file (the terminal's rich tables are
``botify_cli.analysis_tables``).

Colours follow the course for the sign (effect, upper and lower in green when ≥ 0 and red
when < 0) but not for significance: the significant cell is filled green for a significant
gain, red for a significant loss and grey when the interval holds 0, because an effect the
test cannot tell from zero is no failure. Arms are named by their recommender when the
caller knows them. The HTML has no scripts and no external resources: CSS and the SVG
plots are inline.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

import numpy as np

from botify.analysis.learning import Histogram, Learning
from botify.analysis.report import COURSE_COLUMNS, AnalysisReport, CourseRow

GREEN, RED, GREY = "#1a7f37", "#cf222e", "#8c959f"
PALETTE = (
    "#0969da",
    "#bf3989",
    "#1a7f37",
    "#bc4c00",
    "#8250df",
    "#1b7c83",
    "#cf222e",
    "#57606a",
    "#9a6700",
)


def fmt(value: float, signed: bool = False, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:+.2f}" if signed else f"{value:.{digits}g}"


def srm_summary(report: AnalysisReport) -> str:
    """The sample-ratio check in one line: counts per arm, chi², p and the verdict."""
    s = report.srm
    counts = ", ".join(f"{arm}={n}" for arm, n in s.counts.items())
    verdict = "MISMATCH" if s.mismatch else "ok"
    return (
        f"sample ratio: {counts}; chi2={fmt(s.chi2, digits=4)} p={fmt(s.p_value, digits=3)} "
        f"(alarm below {s.threshold}): {verdict}"
    )


# Metrics where a rise is a loss.
LOWER_IS_BETTER = frozenset({"mean_request_latency"})


def is_gain(row: CourseRow) -> bool:
    return (row.effect < 0) if row.metric in LOWER_IS_BETTER else (row.effect > 0)


# ---- HTML ------------------------------------------------------------------------------


# Series of (Unix time, value) per label, e.g. each arm's mean time per session over a run.
Timeline = dict[str, list[tuple[float, float]]]


def write_html(
    report: AnalysisReport,
    path: Path | str,
    timeline: Timeline | None = None,
    labels: dict[str, str] | None = None,
    learning: Learning | None = None,
) -> Path:
    """The report; ``labels`` names arms (arm -> recommender), ``learning`` adds the run's
    curves, the versions going live, freshness and the oracle."""
    path = Path(path)
    path.write_text(html_report(report, timeline, labels, learning), encoding="utf-8")
    return path


def html_report(
    report: AnalysisReport,
    timeline: Timeline | None = None,
    labels: dict[str, str] | None = None,
    learning: Learning | None = None,
) -> str:
    names = {arm: arm_label(arm, labels) for arm in report.srm.counts}
    metrics = list(dict.fromkeys(row.metric for row in report.rows))
    plots = "".join(
        f"<figure><figcaption>{escape(m)}: effect in % with 95% interval (grey: the interval "
        f"holds 0)</figcaption>{forest_svg(report, m, names)}</figure>"
        for m in metrics
    )
    times = {names.get(a, a): v for a, v in report.session_times.items()}
    title = f"botify A/B report: {escape(report.experiment)}"
    srm = escape(srm_summary(report))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
        f"<p>control arm <b>{escape(report.control)}</b>; {report.rows_used} rows used, "
        f"{report.rows_excluded} without an arm for this experiment left out, "
        f"{report.rows_bad} bad rows skipped.</p>"
        f'<p class="{"alarm" if report.srm.mismatch else ""}">{srm}</p>'
        f"<h2>Arms</h2>{_arms_html(report, names)}"
        f"<h2>Effects</h2>{_course_html(report, names)}"
        f"<h2>Effects with intervals</h2>{plots}"
        f"{_learning_html(learning)}"
        f"<h2>Session time per arm</h2><figure>{histogram_svg(times)}"
        f"<figcaption>share of finished sessions by session time</figcaption></figure>"
        f"{_timeline_html(timeline)}"
        f"<h2>Beyond the course</h2>{_extras_html(report, names)}</body></html>"
    )


def _timeline_html(timeline: Timeline | None) -> str:
    if timeline is None:
        return ""
    if not any(math.isfinite(v) for s in timeline.values() for _, v in s):
        return (
            "<h2>Mean time per session over the run</h2><p>Prometheus recorded no ended "
            "session for this run (too short for its scrapes?).</p>"
        )
    return (
        f"<h2>Mean time per session over the run</h2><figure>{timeline_svg(timeline)}"
        "<figcaption>each arm's pooled mean over a sliding window, as Prometheus recorded it "
        "live from the stream workers' metrics (warm-up included)</figcaption></figure>"
    )


def timeline_svg(timeline: Timeline, width: int = 760, height: int = 280) -> str:
    """One line per label over time; gaps (no session in a window) break the line."""
    t0 = min((t for s in timeline.values() for t, _ in s), default=0.0)
    shifted = {k: [(t - t0, v) for t, v in s] for k, s in timeline.items()}
    return line_chart(shifted, width, height)


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    width: int = 760,
    height: int = 280,
    boundary: tuple[float, str] | None = None,
    ceiling: tuple[float, str] | None = None,
    marks: dict[str, list[tuple[float, float]]] | None = None,
    share: bool = False,
) -> str:
    """One line per label against seconds (non-finite values break a line). ``boundary``
    draws a labelled vertical line at a time, ``ceiling`` a dashed horizontal one at a value
    (at the top, marked as off the scale, when it is over twice the highest point);
    ``marks`` puts one row of ticks per label under the plot (e.g. versions going live)."""
    points = [(t, v) for s in series.values() for t, v in s if math.isfinite(v)]
    if not points:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    marks = marks or {}
    t0 = 0.0
    t1 = max([t for t, _ in points] + [t for m in marks.values() for t, _ in m])
    peak = max(v for _, v in points) or 1.0
    off_scale = ceiling is not None and ceiling[0] > 2 * peak
    if ceiling is not None and not off_scale:
        peak = max(peak, ceiling[0])
    peak *= 1.05
    left, top_pad, right = 45, 10, 190
    bottom = 30 + 16 * len(marks)
    height += 16 * len(marks)
    pw, ph = width - left - right, height - bottom - top_pad

    def x(t: float) -> float:
        return left + (t - t0) / ((t1 - t0) or 1.0) * pw

    def y(v: float) -> float:
        return top_pad + ph - v / peak * ph

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<line x1="{left}" y1="{top_pad + ph}" x2="{left + pw}" y2="{top_pad + ph}" '
        f'stroke="{GREY}"/>',
        f'<text x="{left}" y="{height - 8}" fill="{GREY}">0 s</text>',
        f'<text x="{left + pw}" y="{height - 8}" text-anchor="end" fill="{GREY}">'
        f"{t1 - t0:.0f} s</text>",
        f'<text x="{left - 5}" y="{top_pad + 10}" text-anchor="end" fill="{GREY}">'
        f"{f'{peak:.0%}' if share else f'{peak:.1f}'}</text>",
        f'<text x="{left - 5}" y="{top_pad + ph}" text-anchor="end" fill="{GREY}">0</text>',
    ]
    if boundary is not None:
        bx = x(boundary[0])
        parts.append(
            f'<line x1="{bx:.1f}" y1="{top_pad}" x2="{bx:.1f}" y2="{top_pad + ph}" '
            f'stroke="{GREY}" stroke-dasharray="4 3"/><text x="{bx + 4:.1f}" '
            f'y="{top_pad + ph - 6}" fill="{GREY}">{escape(boundary[1])}</text>'
        )
    if ceiling is not None:
        cy = top_pad + 2 if off_scale else y(ceiling[0])
        text = f"{ceiling[1]} {ceiling[0]:.1f}" + (" (off the scale)" if off_scale else "")
        parts.append(
            f'<line x1="{left}" y1="{cy:.1f}" x2="{left + pw}" y2="{cy:.1f}" stroke="#24292f" '
            f'stroke-dasharray="8 4"/><text x="{left + pw - 4}" y="{cy + 14:.1f}" '
            f'text-anchor="end">{escape(text)}</text>'
        )
    for k, (label, line) in enumerate(series.items()):
        colour = PALETTE[k % len(PALETTE)]
        runs: list[list[str]] = [[]]
        for t, v in line:
            if math.isfinite(v):
                runs[-1].append(f"{x(t):.1f},{y(v):.1f}")
            elif runs[-1]:
                runs.append([])
        for run in (r for r in runs if r):
            parts.append(
                f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" '
                'stroke-width="2"/>'
            )
        ly = top_pad + 15 + 18 * k
        parts.append(
            f'<line x1="{width - right + 10}" y1="{ly - 4}" x2="{width - right + 30}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{width - right + 35}" y="{ly}">{escape(label)}</text>'
        )
    for k, (label, ticks) in enumerate(marks.items()):
        my = top_pad + ph + 22 + 16 * k
        parts.append(
            f'<text x="{left + pw + 10}" y="{my + 4}" fill="{GREY}">{escape(label)}</text>'
        )
        for t, v in ticks:
            parts.append(
                f'<line x1="{x(t):.1f}" y1="{my - 5}" x2="{x(t):.1f}" y2="{my + 5}" '
                f'stroke="#24292f" stroke-width="1.5"><title>v{v:.0f} at {t:.0f} s</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _learning_html(learning: Learning | None) -> str:
    if learning is None or not learning.curves:
        return ""
    boundary = (
        None if learning.measured_from_s is None else (learning.measured_from_s, "measured phase →")
    )
    ceiling = None if learning.oracle is None else (learning.oracle, "oracle")
    marks = {f"{m} versions live": v for m, v in learning.versions.items() if v}
    chart = line_chart(learning.curves, 760, 300, boundary, ceiling, marks)
    fresh = {m: h for m, h in learning.freshness.items() if h.total}
    return (
        "<h2>Learning over the run</h2><figure>"
        f"{chart}<figcaption>each arm's mean time per session over windows of "
        f"{learning.window} of its sessions (warm-up included), against seconds since the "
        "traffic began; the dashed vertical line starts the measured phase, the ticks below "
        "mark when each version of a model first served a request, and the dashed horizontal "
        "line is the oracle's ceiling on the measured episodes (it knows each session's hidden "
        "taste)</figcaption></figure>"
        + (
            f"<h2>Freshness</h2><figure>{freshness_svg(fresh)}<figcaption>listens of the "
            "measured phase by freshness: seconds from the listen until a version trained on "
            "it first served a request</figcaption></figure>"
            if fresh
            else ""
        )
    )


def freshness_svg(histograms: dict[str, Histogram], width: int = 760, height: int = 240) -> str:
    """Share of listens per freshness bin, one step line per model."""
    series = {}
    for model, h in histograms.items():
        steps = [(0.0, 0.0)]
        for i, c in enumerate(h.counts):
            share = c / h.total
            steps += [(i * h.width, share), ((i + 1) * h.width, share)]
        series[model] = [*steps, (len(h.counts) * h.width, 0.0)]
    return line_chart(series, width, height, share=True)


_CSS = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#24292f}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:right}"
    "td:first-child,td:nth-child(2),th{text-align:left}"
    ".pos{color:#1a7f37}.neg{color:#cf222e}.nan{color:#8c959f}"
    ".sig{color:white;background:#1a7f37}.signeg{color:white;background:#cf222e}"
    ".nsig{color:white;background:#8c959f}"
    ".alarm{color:#cf222e;font-weight:bold}figure{margin:1em 0}"
    "figcaption{font-size:12px;color:#57606a}"
)


def _cell(value: float, signed: bool = True) -> str:
    cls = "nan" if value is None or math.isnan(value) else ("neg" if value < 0 else "pos")
    return f'<td class="{cls}">{escape(fmt(value, signed=signed))}</td>'


def arm_label(arm: str, labels: dict[str, str] | None) -> str:
    """The arm's name, with its recommender when ``labels`` knows it."""
    label = (labels or {}).get(arm)
    return f"{arm} {label}" if label else arm


def _course_html(report: AnalysisReport, names: dict[str, str]) -> str:
    head = "".join(f"<th>{c}</th>" for c in COURSE_COLUMNS)
    body = []
    for r in report.rows:
        cls = "nsig" if not r.significant else ("sig" if is_gain(r) else "signeg")
        sig = f'<td class="{cls}">{r.significant}</td>'
        body.append(
            f"<tr><td>{escape(names.get(r.treatment, r.treatment))}</td><td>{escape(r.metric)}</td>"
            f"{_cell(r.effect)}{_cell(r.upper)}{_cell(r.lower)}"
            f"<td>{fmt(r.control_mean)}</td><td>{fmt(r.treatment_mean)}</td>{sig}</tr>"
        )
    return f'<table class="course"><tr>{head}</tr>{"".join(body)}</table>'


def _arms_html(report: AnalysisReport, names: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><td>{escape(names.get(a.arm, a.arm))}</td><td>{a.users}</td><td>{a.sessions}</td>"
        f"<td>{fmt(a.mean_time_per_session)}</td><td>{fmt(a.mean_tracks_per_session)}</td></tr>"
        for a in report.arms
    )
    head = "<th>arm</th><th>users</th><th>sessions</th><th>mean_time_per_session</th>"
    return f"<table><tr>{head}<th>mean_tracks_per_session</th></tr>{rows}</table>"


def _extras_html(report: AnalysisReport, names: dict[str, str]) -> str:
    head = (
        "<th>treatment</th><th>metric</th><th>n_C</th><th>n_T</th><th>p</th><th>p_holm</th>"
        "<th>delta-method effect %</th><th>lower</th><th>upper</th>"
    )
    rows = "".join(
        f"<tr><td>{escape(names.get(e.treatment, e.treatment))}</td><td>{escape(e.metric)}</td>"
        f"<td>{e.n_control}</td>"
        f"<td>{e.n_treatment}</td><td>{fmt(e.p_value, digits=3)}</td>"
        f"<td>{fmt(e.p_holm, digits=3)}</td>{_cell(e.delta_effect)}{_cell(e.delta_lower)}"
        f"{_cell(e.delta_upper)}</tr>"
        for e in report.extras
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def forest_svg(
    report: AnalysisReport, metric: str, names: dict[str, str] | None = None, width: int = 760
) -> str:
    """Each treatment's effect (dot) and 95% interval (bar) for one metric, zero marked."""
    names = names or {}
    rows = [r for r in report.rows if r.metric == metric]
    finite = [v for r in rows for v in (r.lower, r.upper, r.effect) if not math.isnan(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite])
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, step = 180, 200, 30
    height = step * len(rows) + 40
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<line x1="{x(0):.1f}" y1="10" x2="{x(0):.1f}" y2="{height - 25}" stroke="{GREY}" '
        'stroke-dasharray="4 3"/>',
        f'<text x="{x(0):.1f}" y="{height - 8}" text-anchor="middle" fill="{GREY}">0%</text>',
    ]
    # The ends' labels, unless they would overprint the 0 % label.
    if x(0) - left > 50:
        parts.append(f'<text x="{left}" y="{height - 8}" fill="{GREY}">{lo:+.1f}%</text>')
    if left + plot_w - x(0) > 50:
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" fill="{GREY}">'
            f"{hi:+.1f}%</text>"
        )
    for i, r in enumerate(rows):
        y = 25 + i * step
        colour = GREY if not r.significant else (GREEN if is_gain(r) else RED)
        name = names.get(r.treatment, r.treatment)
        parts.append(f'<text x="8" y="{y + 4}">{escape(name)}</text>')
        if not math.isnan(r.lower) and not math.isnan(r.upper):
            parts.append(
                f'<line x1="{x(r.lower):.1f}" y1="{y}" x2="{x(r.upper):.1f}" y2="{y}" '
                f'stroke="{colour}" stroke-width="3"/>'
            )
        if not math.isnan(r.effect):
            parts.append(f'<circle cx="{x(r.effect):.1f}" cy="{y}" r="5" fill="{colour}"/>')
        label = f"{fmt(r.effect, True)}% [{fmt(r.lower, True)}, {fmt(r.upper, True)}]"
        parts.append(f'<text x="{width - right + 10}" y="{y + 4}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(
    session_times: dict[str, np.ndarray], width: int = 760, height: int = 260, bins: int = 30
) -> str:
    """Share of sessions per session-time bin, one step line per arm."""
    arms = [a for a in session_times if len(session_times[a])]
    if not arms:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    top = max(float(np.quantile(session_times[a], 0.99)) for a in arms)
    edges = np.linspace(0.0, max(top, 1.0), bins + 1)
    shares = {}
    for a in arms:
        counts, _ = np.histogram(np.clip(session_times[a], 0, edges[-1]), bins=edges)
        shares[a] = counts / counts.sum()
    peak = max(float(s.max()) for s in shares.values()) or 1.0
    left, bottom, top_pad, right = 45, 30, 10, 190
    pw, ph = width - left - right, height - bottom - top_pad

    def xy(edge: float, share: float) -> str:
        return f"{left + edge / edges[-1] * pw:.1f},{top_pad + ph - share / peak * ph:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<line x1="{left}" y1="{top_pad + ph}" x2="{left + pw}" y2="{top_pad + ph}" '
        f'stroke="{GREY}"/>',
        f'<text x="{left}" y="{height - 8}" fill="{GREY}">0</text>',
        f'<text x="{left + pw}" y="{height - 8}" text-anchor="end" fill="{GREY}">'
        f"{edges[-1]:.1f}</text>",
        f'<text x="{left - 5}" y="{top_pad + 10}" text-anchor="end" fill="{GREY}">'
        f"{peak:.0%}</text>",
    ]
    for k, a in enumerate(arms):
        colour = PALETTE[k % len(PALETTE)]
        points = [xy(edges[0], 0.0)]
        for i, share in enumerate(shares[a]):
            points += [xy(edges[i], float(share)), xy(edges[i + 1], float(share))]
        points.append(xy(edges[-1], 0.0))
        parts.append(
            f'<polyline points="{" ".join(points)}" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
        )
        ly = top_pad + 15 + 18 * k
        parts.append(
            f'<line x1="{width - right + 10}" y1="{ly - 4}" x2="{width - right + 30}" '
            f'y2="{ly - 4}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{width - right + 35}" y="{ly}">{escape(a)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
