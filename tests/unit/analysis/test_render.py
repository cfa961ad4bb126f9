"""The HTML report: the course colours, plots, and nothing fetched from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from botify.analysis import COURSE_COLUMNS, AnalysisReport, analyze, load_log
from botify.analysis.render import (
    forest_svg,
    histogram_svg,
    html_report,
    timeline_svg,
    write_html,
)
from tests.unit.analysis.logs import EXPERIMENT, original_log, write_jsonl


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> AnalysisReport:
    path = write_jsonl(original_log(seed=41, users=1500), tmp_path_factory.mktemp("l") / "d.json")
    return analyze(load_log(path, EXPERIMENT))


def test_html_is_self_contained_with_table_and_plots(
    report: AnalysisReport, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    write_html(report, out)
    text = out.read_text()
    for column in COURSE_COLUMNS:
        assert f"<th>{column}</th>" in text
    assert text.count("<svg") == 5 + 1  # one forest plot per metric, one histogram
    course = re.search(r'<table class="course">(.*?)</table>', text)
    assert course is not None
    rows = re.findall(r"<tr><td>.*?</tr>", course.group(1))
    assert len(rows) == len(report.rows)
    for row, html in zip(report.rows, rows, strict=True):
        cells = re.findall(r'<td(?: class="(\w+)")?>([^<]*)</td>', html)
        assert cells[1][1] == row.metric
        assert cells[2][0] == ("neg" if row.effect < 0 else "pos")
        # Filled green for a significant gain, red for a significant loss, grey otherwise.
        gain = row.effect < 0 if row.metric == "mean_request_latency" else row.effect > 0
        expected = "nsig" if not row.significant else ("sig" if gain else "signeg")
        assert cells[-1] == (expected, str(row.significant))
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text and "<script" not in text


def test_plots_draw_every_arm(report: AnalysisReport) -> None:
    forest = forest_svg(report, "mean_time_per_session")
    assert forest.count("<circle") == 2 and ">T1<" in forest and ">T2<" in forest
    histogram = histogram_svg(report.session_times)
    assert histogram.count("<polyline") == 3


def test_the_timeline_draws_one_line_per_arm_and_breaks_it_where_a_window_is_empty(
    report: AnalysisReport, tmp_path: Path
) -> None:
    nan = float("nan")
    timeline = {
        "C random": [(0.0, 2.0), (10.0, 2.1), (20.0, nan), (30.0, 2.2)],
        "T1 affinity": [(0.0, 3.0), (10.0, 5.0), (20.0, 8.0), (30.0, 9.0)],
    }
    svg = timeline_svg(timeline)
    assert svg.count("<polyline") == 3  # C's line breaks at the empty window
    assert ">C random<" in svg and ">T1 affinity<" in svg and "30 s" in svg
    out = write_html(report, tmp_path / "r.html", timeline)
    assert "Mean time per session over the run" in out.read_text()
    # Without Prometheus the section is left out; with no data, it says so.
    assert "over the run" not in write_html(report, tmp_path / "s.html").read_text()
    empty = write_html(report, tmp_path / "e.html", {"C random": [(0.0, nan)]}).read_text()
    assert "recorded no ended session" in empty


def test_the_report_names_arms_by_recommender_and_shows_learning(
    report: AnalysisReport, tmp_path: Path
) -> None:
    from botify.analysis.learning import Histogram, Learning

    labels = {arm: f"rec{arm}" for arm in report.srm.counts}
    learning = Learning(
        0,
        30.0,
        200,
        {"recT1": [(10.0, 3.0), (50.0, 9.0)], "recC": [(10.0, 2.0), (50.0, 2.1)]},
        {"m": [(12.0, 1.0), (40.0, 2.0)]},
        {"m": Histogram(5.0, [0, 3, 1])},
        oracle=8.0,
    )
    text = write_html(report, tmp_path / "l.html", labels=labels, learning=learning).read_text()
    assert "Learning over the run" in text and "Freshness" in text
    assert "m versions live" in text and "v2 at 40 s" in text
    assert "oracle 8.0" in text and "off the scale" not in text
    assert "T1 recT1" in text
    # Without learning data the section is left out.
    assert "Learning over the run" not in html_report(report)
