"""The platform never sees the simulator's hidden world.

Nothing under botify/ or services/ names botify_sim in a string (as importlib would use it)
or mentions the hidden part of a world on disk. Static imports of it are the import
contract's to refuse (pyproject.toml, tests/unit/test_import_contracts.py). Recommenders must learn from listens, as they would
from real users; a recommender that read the embeddings would win every A/B test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from botify.settings import REPO_DIR
from botify_sim.world import HIDDEN_DIR, HIDDEN_FILE

PLATFORM_ROOTS = ("botify", "services")
SIM_PACKAGE = "botify_sim"


def platform_files() -> list[Path]:
    return sorted(p for root in PLATFORM_ROOTS for p in (REPO_DIR / root).rglob("*.py"))


def boundary_violations(source: str) -> list[str]:
    """What in this source crosses into the simulator by name: its package or the hidden
    files' names in a string (as importlib or a path would use them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if (
                SIM_PACKAGE in text
                or HIDDEN_FILE in text
                or f"{HIDDEN_DIR}/" in text
                or text.strip("/") == HIDDEN_DIR
            ):
                found.append(f"string {text!r}")
    return found


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("mod = importlib.import_module('botify_sim.world')", ["string 'botify_sim.world'"]),
        ("path = root / 'hidden' / 'x.npy'", ["string 'hidden'"]),
        ("np.load(f'{world}/hidden/world.npz')", ["string '/hidden/world.npz'"]),
        ("emb = np.load(d + '/world.npz')", ["string '/world.npz'"]),
    ],
)
def test_checker_detects_a_crossing(snippet: str, expected: list[str]) -> None:
    assert boundary_violations(snippet) == expected


def test_checker_lets_ordinary_code_through() -> None:
    snippet = (
        "import botify.catalog\nfrom botify.recommenders import build_recommender\n"
        "css = 'overflow: hidden'\nname = 'botify.sim'\npath = root / 'catalog.jsonl'\n"
    )
    assert boundary_violations(snippet) == []


def test_the_platform_is_scanned() -> None:
    files = platform_files()
    assert any(p.name == "catalog.py" for p in files)
    assert any(p.parts[-3:] == ("services", "api", "app.py") for p in files)


@pytest.mark.parametrize("path", platform_files(), ids=lambda p: str(p.relative_to(REPO_DIR)))
def test_platform_module_does_not_reach_the_simulator(path: Path) -> None:
    assert boundary_violations(path.read_text()) == []
