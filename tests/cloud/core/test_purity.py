"""The cloud core does no I/O and draws no randomness or time of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import cloud.core

CORE = Path(cloud.core.__file__).parent

# On top of the layout test's I/O list: a core takes `now` and `randbelow` as arguments.
BANNED = frozenset(
    {
        "asyncio",
        "fastapi",
        "httpx",
        "os",
        "paho",
        "psycopg",
        "qrcode",
        "random",
        "requests",
        "secrets",
        "socket",
        "sqlalchemy",
        "sqlite3",
        "sqlmodel",
        "subprocess",
        "threading",
        "time",
        "twilio",
        "urllib",
        "uuid",
        "cabinet",
        "firmware_sim",
        "locker",
    }
)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_nothing_banned() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) >= 9
    found = [
        f"{m.name} imports {sorted(imports(m) & BANNED)}" for m in modules if imports(m) & BANNED
    ]
    assert not found, found


def test_core_reads_no_clock() -> None:
    for module in sorted(CORE.rglob("*.py")):
        text = module.read_text(encoding="utf-8")
        for call in ("datetime.now(", "datetime.utcnow(", "date.today(", "datetime.today("):
            assert call not in text, f"{module.name} reads the clock: {call}"


def test_core_keeps_protocol_models_out_of_its_state() -> None:
    for module in sorted(CORE.rglob("*.py")):
        assert "protocol.messages" not in imports_from(module), module.name


def imports_from(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }


def test_every_module_says_what_it_is_for() -> None:
    for module in sorted(CORE.rglob("*.py")):
        docstring = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8")))
        assert docstring, f"{module.name} has no docstring"
        assert module.stem in (cloud.core.__doc__ or "") or module.stem == "__init__"
