"""'A command still in play' is one rule: the queries' expression and the due index's predicate."""

from __future__ import annotations

import re

from sqlalchemy.dialects import postgresql, sqlite

from cloud.db import commands, models


def _plain(sql: str) -> str:
    return re.sub(r"\s+", " ", sql.replace("command_outbox.", "")).strip()


def test_the_queries_and_the_due_index_mean_the_same_commands_in_play() -> None:
    """The partial index `ix_command_outbox_due` serves the dispatcher's due query only while
    its predicate is the query's: a drift would make PostgreSQL scan the whole outbox."""
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        compiled = str(commands.IN_PLAY.compile(dialect=dialect))
        assert _plain(compiled) == models.COMMANDS_IN_PLAY


def test_the_command_modules_spell_in_play_once() -> None:
    """Only cloud/db/commands.py writes the three conditions (models.py keeps the index's SQL)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[3] / "cloud"
    spelled = [
        path.relative_to(root.parent).as_posix()
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
        and "superseded_by).is_(None)" in path.read_text(encoding="utf-8")
    ]
    assert spelled == ["cloud/db/commands.py"]
