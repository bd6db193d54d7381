"""Linters and validators the deploy tests run: found on PATH, else skipped (failed under CI)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.services import in_ci

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def require_tool(name: str, debian_package: str) -> str:
    """Return the tool's path; skip the test naming how to get it (fail under CI=true)."""
    found = shutil.which(name) or shutil.which(f"/usr/bin/{name}")
    if found:
        return found
    message = (
        f"{name} is not installed: `./dev services` installs it (Debian: apt-get install "
        f"--no-install-recommends {debian_package})"
    )
    if in_ci():
        pytest.fail(f"CI needs {name}: {message}", pytrace=False)
    pytest.skip(message)
