"""The core does no I/O: nothing under cabinet/core imports a clock, a socket, a file or a dice."""

from __future__ import annotations

import ast
from pathlib import Path

import cabinet.core

CORE = Path(cabinet.core.__file__).parent

# Stricter than tests/test_layout.py: randomness is an argument too (ids via Context.new_id).
FORBIDDEN = {
    "asyncio",
    "gpiozero",
    "httpx",
    "io",
    "logging",
    "os",
    "paho",
    "pathlib",
    "random",
    "secrets",
    "serial",
    "shutil",
    "socket",
    "sqlite3",
    "subprocess",
    "sys",
    "threading",
    "time",
    "uuid",
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_core_imports_no_io_time_or_randomness() -> None:
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 10
    bad = {str(m.relative_to(CORE)): sorted(imports(m) & FORBIDDEN) for m in modules}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_core_imports_only_itself_protocol_and_a_few_pure_libraries() -> None:
    allowed = {
        "__future__",
        "cabinet",
        "collections",
        "dataclasses",
        "datetime",
        "enum",
        "hmac",
        "math",
        "phonenumbers",
        "protocol",
        "re",
        "types",
        "typing",
    }
    for module in sorted(CORE.rglob("*.py")):
        extra = imports(module) - allowed
        assert not extra, f"{module.name} imports {sorted(extra)}"


def test_every_module_says_what_it_is_for_and_the_package_lists_them() -> None:
    listed = cabinet.core.__doc__ or ""
    for module in sorted(CORE.glob("*.py")):
        doc = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8")))
        assert doc, f"{module.name} has no docstring"
        if module.stem != "__init__":
            assert f"`{module.stem}`" in listed, f"{module.stem} missing from the package docstring"
