"""/docs renders in a real browser with no way to reach the internet: headless Chromium,
every host but the API's unresolvable."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from botify.settings import Settings
from botify_cli.stack import EmbeddedStack

pytestmark = pytest.mark.slow

# The guide's headless flags, and a resolver that knows only the loopback address.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,1400",
    "--virtual-time-budget=15000",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with EmbeddedStack(Settings(), tmp_path_factory.mktemp("docs"), stream_workers=0) as stack:
        assert stack.endpoints is not None
        yield stack.endpoints.api


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "headless Chromium is needed: apt-get install chromium (make test does)"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.parametrize(
    ("page", "rendered"),
    [
        # Swagger UI's operation blocks, built by its JavaScript from /openapi.json.
        ("/docs", ['class="opblock-summary-path"', "/next/{user}", "/last/{user}"]),
        # ReDoc's operation headings, likewise.
        ("/redoc", ["/next/{user}", "Record the listen and return the next track"]),
    ],
)
def test_api_docs_render_offline_in_headless_chromium(
    api: str, page: str, rendered: list[str], tmp_path: Path
) -> None:
    dom = chromium("--dump-dom", f"{api}{page}").stdout
    for text in rendered:
        assert text in dom, (text, dom[-3000:])
    shot = tmp_path / f"{page.strip('/')}.png"
    chromium(f"--screenshot={shot}", f"{api}{page}")
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
