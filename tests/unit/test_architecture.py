"""The core stays pure: it never imports a service, a web or stream framework, or torch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from botify.settings import REPO_DIR

FORBIDDEN_IN_CORE = (
    "services",
    "botify_cli",
    "botify_sim",
    "fastapi",
    "starlette",
    "faust",
    "torch",
    "uvicorn",
)


def imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def violations(source: str, forbidden: tuple[str, ...]) -> set[str]:
    return {m for m in imported_modules(source) if m.split(".")[0] in forbidden}


def test_checker_detects_a_forbidden_import() -> None:
    snippet = (
        "import fastapi\nfrom services.api import app\nfrom torch import nn\nimport botify.events\n"
    )
    assert violations(snippet, FORBIDDEN_IN_CORE) == {"fastapi", "services.api", "torch"}


@pytest.mark.parametrize("path", sorted((REPO_DIR / "botify").rglob("*.py")), ids=str)
def test_core_module_imports_no_service_or_framework(path: Path) -> None:
    assert not violations(path.read_text(), FORBIDDEN_IN_CORE)


def test_no_pickle_anywhere() -> None:
    roots = [REPO_DIR / d for d in ("botify", "services", "botify_cli", "botify_sim")]
    for path in (p for root in roots if root.exists() for p in root.rglob("*.py")):
        assert not violations(path.read_text(), ("pickle", "cloudpickle", "dill")), path
