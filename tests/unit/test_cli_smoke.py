"""``botify export`` and ``botify world`` run end to end through typer (their libraries are
imported inside the commands: an import error there would show only when they run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from botify_cli.main import app
from botify_cli.processes import free_port
from botify_sim.config import DEFAULT_CONFIG


@pytest.mark.slow  # librdkafka's metadata request waits out its timeout
def test_export_against_an_unreachable_broker_is_a_clean_error(tmp_path: Path) -> None:
    env = {"BOTIFY_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["export", str(tmp_path / "out.jsonl")], env=env)
    assert result.exit_code == 2, result.output
    assert "cannot list topic" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # typer's exit, not an error escaping
    assert not (tmp_path / "out.jsonl").exists()


def test_world_builds_a_small_world(tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    text = DEFAULT_CONFIG.read_text()
    for big, small in (
        ("tracks = 50000", "tracks = 500"),
        ("artists = 10000", "artists = 40"),
        ("genres = 24", "genres = 8"),
        ("users = 10000", "users = 50"),
    ):
        assert big in text
        text = text.replace(big, small, 1)
    config.write_text(text)
    out = tmp_path / "world"
    result = CliRunner().invoke(
        app, ["world", "--out", str(out), "--config", str(config)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "world: 500 tracks" in result.output
    assert list(out.rglob("catalog.jsonl"))
