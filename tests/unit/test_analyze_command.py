"""`botify analyze` as the lead will register it: output, JSON, HTML, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from botify.analysis import COURSE_COLUMNS
from botify_cli.analyze import analyze_command
from tests.unit.analysis.logs import EXPERIMENT, original_log, write_jsonl

app = typer.Typer(pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """A stand-in for botify's CLI."""


app.command("analyze")(analyze_command)
runner = CliRunner()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(original_log(seed=31), tmp_path_factory.mktemp("log") / "data.json")


def test_prints_the_course_table(log: Path) -> None:
    args = ["analyze", str(log), "--experiment", EXPERIMENT]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mean_time_per_session" in result.output and "sample ratio" in result.output


def test_json_is_the_course_table(log: Path) -> None:
    result = runner.invoke(app, ["analyze", str(log), "-e", EXPERIMENT, "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert len(table) == 10 and all(list(row) == list(COURSE_COLUMNS) for row in table)


def test_json_details_and_metric_filter(log: Path) -> None:
    args = ["analyze", str(log), "-e", EXPERIMENT, "--json", "--details", "--metric", "time"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {row["metric"] for row in data["table"]} == {"time"} and "srm" in data


def test_html_report_is_written(log: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["analyze", str(log), "-e", EXPERIMENT, "--html", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "<table" in text and "<svg" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", "-e", EXPERIMENT], "no such file"),
        (["{log}", "-e", "NOPE"], "no experiment 'NOPE'"),
        (["{log}", "-e", EXPERIMENT, "--control", "T7"], "no rows for control arm 'T7'"),
        (["{log}", "-e", EXPERIMENT, "--metric", "dwell"], "unknown metric"),
        (["{garbage}", "-e", EXPERIMENT], "not a readable"),
        (["{empty}", "-e", EXPERIMENT], "empty"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    args: list[str], message: str, log: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not json\n")
    empty = tmp_path / "empty.json"
    empty.write_text("")
    paths = {"{log}": str(log), "{garbage}": str(garbage), "{empty}": str(empty)}
    argv = ["analyze", *(paths.get(a, a) for a in args)]
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
