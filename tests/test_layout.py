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


# --- the cloud's inner layers: api → services → db → core (docs/architecture.md) ---------------
#
# A route or an adapter (worker, notify) talks to services; only `cloud/db` writes SQL; the core
# imports nothing of the cloud. "SQL" here is building a statement (the names below, imported from
# SQLAlchemy or SQLModel) or running one (`.exec(`, `.execute(`). The unit of work a service owns
# (`session.get`, `.add`, `.commit`) is not SQL: a service decides the transaction.

SQL_BUILDERS = frozenset(
    {
        "and_",
        "case",
        "col",
        "delete",
        "exists",
        "func",
        "insert",
        "literal",
        "not_",
        "or_",
        "select",
        "text",
        "tuple_",
        "update",
    }
)
SQL_CALLS = frozenset({"exec", "execute", "scalar", "scalars"})

# What each inner layer of the cloud must not import (module prefixes, dotted).
CLOUD_LAYERS: dict[str, tuple[str, ...]] = {
    "cloud/api": ("cloud.db", "cloud.worker"),
    "cloud/console": ("cloud.db", "cloud.worker"),  # the console's pages: as the API
    "cloud/services": ("cloud.api", "cloud.worker", "cloud.notify", "cloud.fakes"),
    "cloud/db": (
        "cloud.api",
        "cloud.services",
        "cloud.worker",
        "cloud.notify",
        "cloud.settings",
        "cloud.fakes",
    ),
    "cloud/core": (
        "cloud.api",
        "cloud.services",
        "cloud.db",
        "cloud.worker",
        "cloud.notify",
        "cloud.settings",
        "cloud.fakes",
    ),
}
# The stated exceptions, each with its reason. The API builds its engine (`create_app`) and
# opens the request's session (deps): those two need the engine module, nothing else of the db.
# The WeChat sign-in service is handed the OAuth adapter (the route builds it from the settings)
# and turns its one error into the tree's Unavailable: it needs that port's type and error.
LAYER_ALLOWED: dict[str, frozenset[str]] = {
    "cloud/api/app.py": frozenset({"cloud.db.engine"}),
    "cloud/services/scan_wechat.py": frozenset({"cloud.notify.wechat_oauth"}),
}
# Modules that may still write SQL outside cloud/db, for now, each named with why. Issue 12 §2
# rewrites the ingestion path (one typed path, one write path: services/ingest.py,
# deposit_batch.py, worker/ingest_loop.py, presence.py) and moves these queries into cloud/db as
# it does; it empties this set (a module left here without SQL fails the test below).
SQL_OUTSIDE_DB_FOR_NOW: dict[str, str] = {}


def imported_modules(path: Path) -> set[str]:
    """Return the dotted names of the absolute imports of a module (`from a.b import c` gives
    `a.b` and `a.b.c`, since `c` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sql_in(path: Path) -> list[str]:
    """Return where a module builds or runs SQL: `line: what`, in line order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in {"sqlalchemy", "sqlmodel"}:
                found += [
                    (node.lineno, f"imports {node.module}.{alias.name}")
                    for alias in node.names
                    if alias.name in SQL_BUILDERS
                ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS
        ):
            found.append((node.lineno, f".{node.func.attr}(...)"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def _cloud_files(under: str) -> list[Path]:
    return [path for path in python_files(ROOT / under) if "migrations" not in path.parts]


def layer_violations() -> list[str]:
    found = []
    for layer, forbidden in CLOUD_LAYERS.items():
        for path in _cloud_files(layer):
            rel = path.relative_to(ROOT).as_posix()
            allowed = LAYER_ALLOWED.get(rel, frozenset())
            for name in sorted(imported_modules(path)):
                if name in allowed or any(name.startswith(a + ".") for a in allowed):
                    continue
                if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                    found.append(f"{rel} imports {name} ({layer} must not import {forbidden})")
    return found


def sql_outside_db() -> dict[str, list[str]]:
    found = {}
    for path in _cloud_files("cloud"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("cloud/db/"):
            continue
        uses = sql_in(path)
        if uses:
            found[rel] = uses
    return found


def test_the_cloud_layers_import_inwards_only() -> None:
    found = layer_violations()
    assert not found, "api → services → db → core, never outwards:\n" + "\n".join(found)


def test_no_sql_outside_cloud_db() -> None:
    found = {
        rel: uses for rel, uses in sql_outside_db().items() if rel not in SQL_OUTSIDE_DB_FOR_NOW
    }
    listing = "\n".join(f"{rel}:\n    " + "\n    ".join(uses) for rel, uses in found.items())
    assert not found, "only cloud/db writes SQL; move these queries there:\n" + listing


def test_the_named_sql_exceptions_still_need_it() -> None:
    """An exception whose module no longer writes SQL is dropped from the list, not kept."""
    stale = sorted(set(SQL_OUTSIDE_DB_FOR_NOW) - set(sql_outside_db()))
    assert not stale, f"drop from SQL_OUTSIDE_DB_FOR_NOW (no SQL left): {stale}"


def test_the_sql_scanner_sees_builders_and_calls(tmp_path: Path) -> None:
    module = tmp_path / "sample.py"
    module.write_text(
        "from sqlmodel import Session, select\nfrom sqlalchemy import update as u\n"
        "def f(session):\n    session.get(1)\n    return session.exec(select(1))\n"
    )
    assert sql_in(module) == [
        "1: imports sqlmodel.select",
        "2: imports sqlalchemy.update",
        "5: .exec(...)",
    ]
