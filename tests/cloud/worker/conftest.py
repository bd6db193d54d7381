"""Fixtures for the worker tests: a migrated database (SQLite and PostgreSQL) with a cabinet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from tests.cloud.db.builders import register_cabinet


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a migrated database holding cabinet CAB-1 (compartments A01..A04)."""
    upgrade(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        register_cabinet(session)
    yield engine
    engine.dispose()
