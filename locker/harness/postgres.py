"""Scratch PostgreSQL databases: created with a unique name, dropped (WITH FORCE) after use."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from locker.harness import ServiceMissing

if TYPE_CHECKING:
    import psycopg

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def database_url(admin_url: str, dbname: str) -> str:
    """Return the SQLAlchemy-style URL (postgresql+psycopg) of `dbname` on the admin's server."""
    parts = urlsplit(admin_url)
    return urlunsplit(("postgresql+psycopg", parts.netloc, f"/{dbname}", parts.query, ""))


def libpq_url(url: str) -> str:
    """Drop the `+driver` from a SQLAlchemy-style URL so psycopg and psql accept it."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def admin_connect(admin_url: str) -> psycopg.Connection:
    """Connect (autocommit) as a role that may create databases; ServiceMissing if we cannot."""
    try:
        import psycopg
    except ImportError:
        raise ServiceMissing(
            "psycopg is not installed (it is in the dev extra: run `./dev setup`)"
        ) from None
    try:
        return psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ServiceMissing(f"PostgreSQL is unreachable at {admin_url} ({reason})") from None


def database_exists(name: str, admin_url: str) -> bool:
    """Tell whether a database of that name exists on the admin's server."""
    with admin_connect(admin_url) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@dataclass(frozen=True)
class TempDatabase:
    """A throwaway database: `url` is SQLAlchemy-style, `libpq_url` is for psycopg and psql."""

    name: str
    url: str
    admin_url: str

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    def drop(self) -> None:
        """Drop the database, ending any session still connected to it; idempotent."""
        from psycopg import sql

        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(self.name)
        )
        with admin_connect(self.admin_url) as conn:
            conn.execute(statement)


def create_database(admin_url: str, prefix: str = "locker_test_") -> TempDatabase:
    """Create an empty database with a unique name starting with `prefix`."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with admin_connect(admin_url) as conn:
        from psycopg import sql

        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return TempDatabase(name=name, url=database_url(admin_url, name), admin_url=admin_url)


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str = "locker_scratch_") -> Iterator[TempDatabase]:
    """A fresh database for the `with` block; dropped afterwards however the block ends."""
    database = create_database(admin_url, prefix)
    try:
        yield database
    finally:
        database.drop()
