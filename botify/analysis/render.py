"""Show an analysis: a rich table coloured as the course did, and a self-contained HTML
report (the table, each arm's effect with its interval, session-time distributions)."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from rich.table import Table

from botify.analysis.stats import COURSE_KEYS, AnalysisResult, Row

GREEN, RED = "#2e7d32", "#c62828"


def rich_table(result: AnalysisResult) -> Table:
    table = Table(
        title=f"experiment {result.experiment}: treatment vs {result.control} (95 % Welch intervals over users, %)"
    )
    for key in COURSE_KEYS:
        table.add_column(key, justify="left" if key in ("treatment", "metric") else "right")
    table.add_column("p (Holm)", justify="right")
    table.add_column("relative (delta method)", justify="right")
    for r in result.rows:
        colour = "green" if r.effect > 0 else "red"
        sig_style = ("white on green" if r.effect > 0 else "white on red") if r.significant else ""
        table.add_row(
            r.treatment,
            r.metric,
            f"[{colour}]{r.effect:+.2f}[/]",
            f"{r.upper:+.2f}",
            f"{r.lower:+.2f}",
            f"{r.control_mean:.4g}",
            f"{r.treatment_mean:.4g}",
            f"[{sig_style}]{r.significant}[/]" if sig_style else str(r.significant),
            f"{r.p_holm:.3g}",
            f"[{r.rel_lower:+.2f}, {r.rel_upper:+.2f}]",
        )
    return table


def _cell(key: str, r: Row) -> str:
    value = getattr(r, key)
    style = ""
    if key == "effect":
        style = f"color:{GREEN if r.effect > 0 else RED}"
    if key == "significant" and r.significant:
        style = f"background:{GREEN if r.effect > 0 else RED};color:white"
    text = f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))
    return f'<td style="{style}">{text}</td>'


def _effects_svg(result: AnalysisResult, metric: str = "mean_time_per_session") -> str:
    rows = [r for r in result.rows if r.metric == metric]
    if not rows:
        return ""
    lo = min(min(r.lower for r in rows), 0.0)
    hi = max(max(r.upper for r in rows), 0.0)
    span = (hi - lo) or 1.0
    width, left, row_h = 640, 90, 34

    def x(v: float) -> float:
        return left + (v - lo) / span * (width - left - 20)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row_h * len(rows) + 40}">'
    ]
    parts.append(
        f'<line x1="{x(0):.1f}" y1="5" x2="{x(0):.1f}" y2="{row_h * len(rows) + 10}" stroke="#888" stroke-dasharray="4"/>'
    )
    for i, r in enumerate(rows):
        y = 20 + i * row_h
        colour = (GREEN if r.effect > 0 else RED) if r.significant else "#555"
        parts.append(f'<text x="5" y="{y + 4}" font-size="13">{html.escape(r.treatment)}</text>')
        parts.append(
            f'<line x1="{x(r.lower):.1f}" y1="{y}" x2="{x(r.upper):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>'
        )
        parts.append(f'<circle cx="{x(r.effect):.1f}" cy="{y}" r="5" fill="{colour}"/>')
        parts.append(
            f'<text x="{x(r.upper) + 6:.1f}" y="{y + 4}" font-size="11">{r.effect:+.1f}% [{r.lower:+.1f}, {r.upper:+.1f}]</text>'
        )
    parts.append(
        f'<text x="{x(0):.1f}" y="{row_h * len(rows) + 30}" font-size="11" text-anchor="middle">0 % (vs {html.escape(result.control)})</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _histograms_svg(result: AnalysisResult, bins: int = 30) -> str:
    arms = [a for a in result.session_times if result.session_times[a]]
    if not arms:
        return ""
    top = max(max(v) for v in (result.session_times[a] for a in arms))
    edges = np.linspace(0, max(top, 1.0), bins + 1)
    width, height, pad = 640, 160, 30
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
    ]
    out = []
    for k, arm in enumerate(arms):
        counts, _ = np.histogram(result.session_times[arm], bins=edges)
        share = counts / max(counts.sum(), 1)
        peak = share.max() or 1.0
        bar_w = (width - 2 * pad) / bins
        bars = "".join(
            f'<rect x="{pad + i * bar_w:.1f}" y="{height - pad - s / peak * (height - 2 * pad):.1f}" '
            f'width="{bar_w - 1:.1f}" height="{s / peak * (height - 2 * pad):.1f}" fill="{palette[k % len(palette)]}"/>'
            for i, s in enumerate(share)
        )
        mean = float(np.mean(result.session_times[arm]))
        out.append(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<text x="{pad}" y="15" font-size="13">arm {html.escape(arm)}: {len(result.session_times[arm]):,} sessions, '
            f"mean {mean:.2f}</text>{bars}"
            f'<text x="{pad}" y="{height - 8}" font-size="11">0</text>'
            f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">{edges[-1]:.1f} (time per session)</text></svg>'
        )
    return "<br/>".join(out)


def write_html(result: AnalysisResult, path: Path | str) -> Path:
    header = "".join(f"<th>{k}</th>" for k in (*COURSE_KEYS, "p (Holm)", "relative, delta method"))
    body = "".join(
        "<tr>"
        + "".join(_cell(k, r) for k in COURSE_KEYS)
        + f"<td>{r.p_holm:.3g}</td><td>[{r.rel_lower:+.2f}, {r.rel_upper:+.2f}]</td></tr>"
        for r in result.rows
    )
    arms = "".join(
        f"<tr><td>{html.escape(a.arm)}</td><td>{a.users}</td><td>{a.sessions}</td>"
        f"<td>{a.mean_time_per_session:.3f}</td><td>{a.mean_tracks_per_session:.2f}</td></tr>"
        for a in result.arms
    )
    srm = result.srm
    srm_text = f"users per arm {srm.users}: χ² = {srm.chi2:.2f}, p = {srm.p_value:.3g}" + (
        " — <b style='color:#c62828'>sample-ratio mismatch</b>"
        if srm.mismatch
        else " — no mismatch"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>botify: {html.escape(result.experiment)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>Experiment {html.escape(result.experiment)}</h1>
<h2>Arms</h2><table><tr><th>arm</th><th>users</th><th>sessions</th><th>mean time / session</th><th>mean tracks / session</th></tr>{arms}</table>
<p>{srm_text}</p>
<h2>Effects vs {html.escape(result.control)} (percent of the control mean, 95 % Welch intervals over users)</h2>
<table><tr>{header}</tr>{body}</table>
<h2>mean_time_per_session: effect and interval per arm</h2>{_effects_svg(result)}
<h2>Session time per arm</h2>{_histograms_svg(result)}
</body></html>"""
    path = Path(path)
    path.write_text(page)
    return path


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
