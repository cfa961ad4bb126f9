"""The terminal's tables: the course colours, as the HTML report has them."""

from __future__ import annotations

import pytest
from rich.console import Console

from botify.analysis import COURSE_COLUMNS, AnalysisReport, analyze, load_log
from botify_cli.analysis_tables import course_table
from tests.unit.analysis.logs import EXPERIMENT, original_log, write_jsonl


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> AnalysisReport:
    path = write_jsonl(original_log(seed=41, users=1500), tmp_path_factory.mktemp("l") / "d.json")
    return analyze(load_log(path, EXPERIMENT))


def test_course_table_colours_effects_by_sign_and_fills_significance_by_direction(
    report: AnalysisReport,
) -> None:
    table = course_table(report)
    assert [c.header for c in table.columns] == list(COURSE_COLUMNS)
    effects, significant = table.columns[2]._cells, table.columns[7]._cells
    for row, effect, sig in zip(report.rows, effects, significant, strict=True):
        assert effect.style == ("red" if row.effect < 0 else "green")
        # A significant gain green, a significant loss red, no detectable effect grey: an
        # interval that holds 0 is no failure.
        gain = row.effect < 0 if row.metric == "mean_request_latency" else row.effect > 0
        expected = (
            "bold white on grey50"
            if not row.significant
            else ("bold white on green" if gain else "bold white on red")
        )
        assert sig.style == expected
    console = Console(record=True, width=200)
    console.print(table)
    assert "mean_time_per_session" in console.export_text()
