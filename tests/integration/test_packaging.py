"""botify as a user gets it: the wheel, installed into a fresh venv outside the checkout
(without torch: the trainer is optional), starts and serves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from botify.settings import REPO_DIR
from botify_cli.processes import free_port
from tests.integration.cli.running import start_up, stop_leaving_no_orphans

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )
    assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def _clean_env() -> dict[str, str]:
    """This process's environment minus anything that points Python at the checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("BOTIFY_")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing but the built wheel and its dependencies; returns its bin dir."""
    # Built from a copy of the sources: the checkout itself stays untouched (no build/).
    work = tmp_path_factory.mktemp("packaging")
    source, dist = work / "src", work / "dist"
    shutil.copytree(
        REPO_DIR,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "runs", "build", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        dist,
        source,
        cwd=work,
    )
    (wheel,) = dist.glob("botify-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "botify/data/catalog.sample.jsonl",
        "botify/data/experiments.toml",
        "botify/schemas/model_meta.v1.json",
        "botify/schemas/listen_event.v1.json",
        "botify_sim/config.toml",
    ):
        assert shipped in names
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=work)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=work)
    return venv / "bin"


def test_the_wheel_installs_alone_and_imports_nothing_from_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    where = run(
        installed / "python",
        "-c",
        "import botify, services, botify_cli, importlib.util as u; "
        "print(botify.__file__); print(u.find_spec('torch') is None)",
        cwd=tmp_path,
    ).split()
    assert str(REPO_DIR) not in where[0] and "site-packages" in where[0], where
    assert where[1] == "True"  # no torch: the trainer is an extra
    settings = run(installed / "botify", "settings", cwd=tmp_path)
    assert "catalog.sample.jsonl" in settings and "site-packages" in settings


def test_botify_up_from_the_wheel_serves_next(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {**_clean_env(), "BOTIFY_RUN_DIR": str(tmp_path / "runs"), "COLUMNS": "200"}
    proc, out = start_up(
        [str(installed / "botify"), "up", "--no-trainer", "--api-port", str(port)],
        env,
        cwd=tmp_path,
        timeout=90,
    )
    try:
        assert "Press Ctrl-C" in out, out
        assert re.search(rf"http://127\.0\.0\.1:{port}", out)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            track = 1
            for _ in range(5):
                resp = client.post("/next/42", json={"track": track, "time": 0.8})
                assert resp.status_code == 200, resp.text
                track = resp.json()["track"]
            assert client.post("/last/42", json={"track": track, "time": 0.3}).status_code == 200
        assert stop_leaving_no_orphans(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
