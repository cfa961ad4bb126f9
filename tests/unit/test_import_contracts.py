"""The import contracts in pyproject.toml ([tool.importlinter]) hold: the core imports no
service, CLI, simulator, framework, torch or supervision library; the platform never imports
the simulator; services are independent of each other and of the CLI; nothing imports pickle.
``make lint`` checks them too; this keeps ``make test`` guarding them."""

from __future__ import annotations

import pytest
from importlinter.cli import lint_imports

from botify.settings import REPO_DIR


def test_the_import_contracts_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_DIR)
    exit_code = lint_imports(
        config_filename=str(REPO_DIR / "pyproject.toml"), no_cache=True, no_logo=True
    )
    assert exit_code == 0, "an import contract is broken: run `lint-imports` to see which"
