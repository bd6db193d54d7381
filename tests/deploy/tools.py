"""Linters and validators the deploy tests run: found, else skipped (failed under CI=true)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.services import in_ci

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def debian(package: str) -> str:
    return (
        f"`./dev services` installs it (Debian: apt-get install --no-install-recommends {package})"
    )


def require_tool(name: str, how_to_get: str) -> str:
    """Return the tool's path (PATH, /usr/bin, the venv); skip naming how to get it."""
    found = (
        shutil.which(name) or shutil.which(f"/usr/bin/{name}") or shutil.which(str(VENV_BIN / name))
    )
    if found:
        return found
    message = f"{name} is not installed: {how_to_get}"
    if in_ci():
        pytest.fail(f"CI needs {name}: {message}", pytrace=False)
    pytest.skip(message)


SHIPPED_CONF = DEPLOY / "compose" / "mosquitto.conf"
# The test's broker picks its own listener, store and log; the rest of the shipped file counts.
# The TLS listener is tested apart, with a CA of the test's own
# (tests/security/test_mqtt_identity.py).
HARNESS_KEYS = (
    "listener",
    "persistence_location",
    "log_dest",
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
)


def shipped_settings(auth_dir: Path) -> str:
    """deploy/compose/mosquitto.conf with the auth files at `auth_dir`, minus harness keys."""
    lines = []
    for line in SHIPPED_CONF.read_text().splitlines():
        key = line.split(maxsplit=1)[0] if line.strip() else ""
        if key in HARNESS_KEYS:
            continue
        lines.append(line.replace("/mosquitto/auth/", f"{auth_dir}/"))
    return "\n".join(lines) + "\n"
