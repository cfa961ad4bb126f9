"""An installed botify finds everything it reads inside its packages: no code outside the
tests resolves a file through the source checkout."""

from __future__ import annotations

import tomllib

from botify.settings import REPO_DIR

PLATFORM = ("botify", "botify_cli", "botify_sim", "services")


def test_no_platform_code_resolves_files_through_the_checkout() -> None:
    users = [
        str(path.relative_to(REPO_DIR))
        for root in PLATFORM
        for path in (REPO_DIR / root).rglob("*.py")
        if "REPO_DIR" in path.read_text() and path != REPO_DIR / "botify" / "settings.py"
    ]
    assert not users, users


def test_every_data_file_of_the_packages_is_declared_package_data() -> None:
    declared = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]
    for package in PLATFORM:
        patterns = declared.get(package, [])
        for path in (REPO_DIR / package).rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(REPO_DIR / package)
            assert any(relative.match(p) for p in patterns), (package, str(relative))
