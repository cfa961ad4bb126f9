"""Schemathesis against a real API process (uvicorn, a real broker and Redis), every check
on: bounded (examples per operation) and seeded, so a run is reproducible and its cost is
known. The spec must describe everything the API answers, and the API must refuse what the
spec says is invalid."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.api_process import api_process

pytestmark = [pytest.mark.slow]

EXAMPLES = 200
SEED = 20261129


def test_schemathesis_finds_no_failure_with_every_check_on(
    tmp_path: Path, broker_url: str, redis_url: str, unique_topic: str
) -> None:
    with api_process(tmp_path, broker_url, redis_url, unique_topic) as (url, _):
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--generation-database",
                "none",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    summary = run.stdout[-6000:]
    print(summary)
    assert run.returncode == 0, summary + run.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert generated is not None and generated.group(1) == generated.group(2), summary
    assert int(generated.group(1)) >= 500
