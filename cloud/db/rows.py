"""Row helpers every record module uses: ids, inserts that skip duplicates, set-based writes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import PydanticUndefined
from sqlalchemy import Column, Table, delete, func
from sqlmodel import Session, SQLModel, select
from ulid import ULID

from cloud.db import bulk
from cloud.db.engine import write_session


def new_id() -> str:
    """Return a fresh, time-ordered, globally unique id (a ULID) for a cloud-made row."""
    return str(ULID())


def insert_ignore(
    *,
    session: Session,
    table: Table | Any,
    rows: Sequence[dict[str, Any]],
    conflict_columns: Sequence[str],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """`INSERT ... ON CONFLICT DO NOTHING` on SQLite and PostgreSQL; return the rows inserted.

    `returning` names the columns to return for each row actually inserted (not the skipped).
    """
    session.flush()
    return bulk.insert(
        session.connection(),
        table,
        rows,
        conflict_columns=conflict_columns,
        returning=returning,
    )


def count_rows(*, session: Session, model: type[SQLModel]) -> int:
    """Return how many rows a table holds."""
    return session.exec(select(func.count()).select_from(model)).one()


def core_rows(session: Session, statement: Any) -> Any:
    """Run a select of plain columns as Core: rows as tuples, without the ORM's per-row work
    (which cost more than the query for the thousands of rows a batch reads)."""
    return session.connection().execute(statement)


def insert_rows(*, session: Session, model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> None:
    """Insert `rows` into `model`'s table in one statement, each filled with the model's
    defaults, so a row is what the ORM would have written for `model(**row)`."""
    if not rows:
        return
    bulk.insert(session.connection(), model.__table__, with_defaults(model, rows))  # type: ignore[attr-defined]


def with_defaults(model: type[SQLModel], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `rows`, each filled with `model`'s plain field defaults where it has no value."""
    defaults = _column_defaults(model)
    return [{**defaults, **row} for row in rows]


_DEFAULTS: dict[type[SQLModel], dict[str, Any]] = {}


def _column_defaults(model: type[SQLModel]) -> dict[str, Any]:
    """The model's plain field defaults, for its columns (an autoincrement id is left out)."""
    if model not in _DEFAULTS:
        table = model.__table__  # type: ignore[attr-defined]
        defaults = {}
        for name, field in model.model_fields.items():
            if name not in table.c or field.default_factory is not None:
                continue
            if field.default is PydanticUndefined:
                continue
            if table.c[name].primary_key and field.default is None:
                continue  # autoincrement: the database numbers it
            defaults[name] = field.default
        _DEFAULTS[model] = defaults
    return _DEFAULTS[model]


def delete_older_than(*, session: Session, column: Column[datetime], before: datetime) -> int:
    """Delete the rows of `column`'s table whose `column` is before `before`; commit; count them.

    Housekeeping for tables that are only logs (one-time codes, pushed-message ids).
    """
    write_session(session)
    try:
        result = session.connection().execute(delete(column.table).where(column < before))
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return result.rowcount
