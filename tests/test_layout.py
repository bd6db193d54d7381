"""Enforce docs/architecture.md's one-way imports between the parts and the I/O-free pure cores."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each part's source folder, under the top-level name it is imported by.
PARTS = {
    "protocol": ROOT / "protocol",
    "cabinet": ROOT / "cabinet",
    "cloud": ROOT / "cloud",
    "firmware_sim": ROOT / "firmware-sim" / "firmware_sim",
}

# What each part must never import (docs/architecture.md#imports-run-one-way:
# locker → cabinet, cloud, firmware-sim → protocol).
FORBIDDEN_IMPORTS = {
    "protocol": {"cabinet", "cloud", "firmware_sim", "locker"},
    "cabinet": {"cloud", "firmware_sim", "locker"},
    "cloud": {"cabinet", "firmware_sim", "locker"},
    "firmware_sim": {"cabinet", "cloud", "locker"},
}

# Pure-core modules (globs from the repo root): plain Python, no I/O; time and randomness come in
# as arguments. Extend this list as new cores appear; files that do not exist yet are not checked.
PURE_CORE_GLOBS = (
    "cabinet/core/**/*.py",
    "cloud/core/**/*.py",
    "protocol/lockboard/**/*.py",
    "protocol/messages.py",
    "protocol/topics.py",
    "protocol/codec.py",
    "protocol/errors.py",
    "protocol/hashing.py",
    "firmware-sim/firmware_sim/board.py",
)

# Top-level modules a pure core must not import. `datetime` stays allowed for its types; reading
# a clock is the caller's job (a core takes `now` as an argument), so `time` is banned, and so is
# drawing randomness (`random`, `secrets`, `uuid`: ids and codes come from injected callables).
IO_MODULES = frozenset(
    {
        "asyncio",
        "fastapi",
        "gpiozero",
        "httpx",
        "io",
        "logging",
        "os",
        "paho",
        "pathlib",
        "psycopg",
        "qrcode",
        "random",
        "requests",
        "secrets",
        "serial",
        "shutil",
        "socket",
        "sqlalchemy",
        "sqlite3",
        "sqlmodel",
        "subprocess",
        "sys",
        "threading",
        "time",
        "twilio",
        "urllib",
        "uuid",
    }
)


def python_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py")) if folder.is_dir() else []


def imported_top_levels(path: Path) -> set[str]:
    """Return the top-level names of every absolute import in a module (relative ones stay home)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def violations(paths: list[Path], forbidden: set[str] | frozenset[str]) -> list[str]:
    found = []
    for path in paths:
        for name in sorted(imported_top_levels(path) & forbidden):
            found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def pure_core_files() -> list[Path]:
    return sorted({path for pattern in PURE_CORE_GLOBS for path in ROOT.glob(pattern)})


def test_the_checks_below_see_the_protocol_package() -> None:
    assert python_files(PARTS["protocol"]), f"no Python module found under {PARTS['protocol']}"


@pytest.mark.parametrize("part", sorted(FORBIDDEN_IMPORTS))
def test_imports_run_one_way(part: str) -> None:
    found = violations(python_files(PARTS[part]), FORBIDDEN_IMPORTS[part])
    assert not found, f"{part} must not import {sorted(FORBIDDEN_IMPORTS[part])}:\n" + "\n".join(
        found
    )


def test_pure_cores_do_no_io() -> None:
    found = violations(pure_core_files(), IO_MODULES)
    assert not found, "pure-core modules must take I/O, time and randomness as arguments:\n" + (
        "\n".join(found)
    )


def test_import_scanner_sees_every_kind_of_import(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "import os.path\nimport paho.mqtt.client as mqtt\nfrom time import monotonic\n"
        "from . import sibling\nfrom .core import thing\n"
        "def f():\n    import socket\n"
    )
    assert imported_top_levels(module) == {"os", "paho", "time", "socket"}
