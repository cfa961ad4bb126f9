"""``botify settings`` shows each model's and recipe's section resolved over its defaults,
and refuses a section no registered model or recipe claims."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from botify_cli import stack
from botify_cli.main import app


def test_settings_show_every_models_section_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTIFY_TRAINER__AFFINITY__EPOCHS", "3")
    monkeypatch.setenv("BOTIFY_RECOMMENDER__AFFINITY_SESSION_POWER", "4")  # the old flat name
    result = CliRunner().invoke(app, ["settings"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["trainer"]["affinity"]["epochs"] == 3
    assert shown["trainer"]["affinity"]["promote_on"] == "mse"  # the model's own default
    assert shown["trainer"]["dae"]["dropout"] == 0.5
    assert shown["recommender"]["affinity"]["session_power"] == 4.0
    assert "affinity_session_power" not in shown["recommender"]
    assert shown["trainer"]["models"][:2] == ["affinity", "contextual"]  # resolved: all of them


def test_settings_refuse_a_section_of_no_registered_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTIFY_TRAINER__AFINITY__EPOCHS", "3")
    result = CliRunner().invoke(app, ["settings"], env={"COLUMNS": "200"})
    assert result.exit_code == 2  # a usage error, like every bad setting
    assert "BOTIFY_TRAINER__AFINITY: no such setting or registered model" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["up", "demo", "settings"])
@pytest.mark.parametrize(
    ("key", "refused"),
    [
        ("BOTIFY_TRAINER__EVERY_EXAMPLE", "BOTIFY_TRAINER__EVERY_EXAMPLE: no such setting"),
        ("BOTIFY_RECOMMENDER__AFINITY__SESSION_POWER", "BOTIFY_RECOMMENDER__AFINITY: no such"),
    ],
)
def test_a_typo_in_a_setting_is_refused_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, command: str, key: str, refused: str
) -> None:
    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"botify {command} started despite {key}")

    monkeypatch.setattr(stack, "new_run_dir", started)
    monkeypatch.setenv(key, "3")
    result = CliRunner().invoke(app, [command], env={"COLUMNS": "200"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert refused in result.output
    assert "Traceback" not in result.output
