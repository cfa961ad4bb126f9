"""``botify --help`` and the small commands (models, settings) start without the heavy
libraries: the analysis (scipy, polars), the export (pyarrow), the model registry and its
recommenders, the simulator, the process stack and anything torch or faust are imported by
the commands that use them only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# Each of these took from tenths of a second to seconds to import, on every CLI start.
HEAVY = (
    "scipy",
    "polars",
    "pyarrow",
    "torch",
    "faust",
    "fastapi",
    "botify_sim",
    "botify.analysis",
    "botify.models",
    "botify.recommenders",
    "botify.listen_export",
    "botify_cli.demo",
    "botify_cli.stack",
    "mirakuru",
)

_LOADED = """
import json, sys
import botify_cli.main
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str) -> set[str]:
    # A fresh interpreter: this test process has imported most of these already.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_importing_the_cli_leaves_the_heavy_libraries_unimported() -> None:
    loaded = _modules_after(_LOADED)
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["models", "history", "--help"], ["analyze", "--help"], ["settings"]],
)
def test_small_commands_run_without_the_heavy_libraries(argv: list[str]) -> None:
    code = f"""
import json, sys
from botify_cli.main import app
try:
    app({argv!r}, prog_name="botify")
except SystemExit as exc:
    assert not exc.code, exc.code
print()
print(json.dumps(sorted(sys.modules)))
"""
    loaded = _modules_after(code)
    assert sorted({m.split(".")[0] for m in loaded} & {"scipy", "polars", "pyarrow", "torch"}) == []
