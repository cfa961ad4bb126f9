"""The import contracts in pyproject.toml ([tool.importlinter]) hold: the core imports no
service, CLI, simulator, framework, torch or supervision library; the platform never imports
the simulator; services are independent of each other and of the CLI; only the trainer
imports torch; nothing imports pickle.
``make lint`` checks them too; this keeps ``make test`` guarding them."""

from __future__ import annotations

import pytest
from importlinter import configuration
from importlinter.application import use_cases

from botify.settings import REPO_DIR


def test_the_import_contracts_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_DIR)
    # The use case, not importlinter.cli.lint_imports: the CLI's logging set-up
    # (logging.config.dictConfig) disables every logger that exists, and so the log
    # assertions of every test after this one.
    configuration.configure()
    passed = use_cases.lint_imports(
        config_filename=str(REPO_DIR / "pyproject.toml"), cache_dir=None, no_logo=True
    )
    assert passed, "an import contract is broken: run `lint-imports` to see which"
