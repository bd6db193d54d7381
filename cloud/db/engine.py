"""The engine factory: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL, by URL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlmodel import Session

from protocol.private_files import make_private

# A writer waits this long for another to finish before SQLite gives up with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option naming how a SQLite transaction begins: "IMMEDIATE" takes the write lock at
# BEGIN, so a read-then-write transaction cannot fail half-way on a lock upgrade.
SQLITE_BEGIN = "sqlite_begin"
# URL query parameter for PostgreSQL: psycopg 3 prepares a statement on the server after its 5th
# run on a connection, which PgBouncer in transaction mode before 1.21 cannot follow (the next
# transaction may run on another server connection). `?prepare_threshold=none` turns preparing
# off, a number sets the threshold (deploy/SCALING.md).
PREPARE_THRESHOLD = "prepare_threshold"

log = logging.getLogger(__name__)


def make_engine(url: str, *, echo: bool = False, **kwargs: Any) -> Engine:
    """Create an engine for `url` (`sqlite:///path`, `postgresql+psycopg://...`).

    On PostgreSQL the pool pings a connection at every checkout (`pool_pre_ping`), so a
    connection the server dropped is replaced before use. The worker passes
    `pool_pre_ping=False`: the ping is a round trip per transaction, and the worker already
    retries a transaction that fails with OperationalError, which is what a dropped connection
    raises; SQLAlchemy then discards every connection the pool held from before, so the retry
    opens a new one (`test_the_worker_recovers_when_postgresql_drops_its_connections`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, echo=echo, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if PREPARE_THRESHOLD in parsed.query:
            threshold = _prepare_threshold(parsed.query[PREPARE_THRESHOLD])
            parsed = parsed.difference_update_query([PREPARE_THRESHOLD])
            kwargs["connect_args"] = {
                **kwargs.get("connect_args", {}),
                PREPARE_THRESHOLD: threshold,
            }
        url = parsed.render_as_string(hide_password=False)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, echo=echo, **kwargs)


def _prepare_threshold(value: str | tuple[str, ...]) -> int | None:
    text = (value[-1] if isinstance(value, tuple) else value).strip().lower()
    if text == "none":
        return None
    if text.isdigit():
        return int(text)
    raise ValueError(f"{PREPARE_THRESHOLD} must be `none` or a whole number, not {text!r}")


def _sqlite_engine(url: str, *, echo: bool, **kwargs: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        # The path as SQLite opens it (it does not expand `~`).
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        make_private(Path(database))  # it holds hashes, sealed codes and keys, phone numbers
    connect_args = kwargs.pop("connect_args", {})
    # Sessions hop between threads (a worker pool, FastAPI's threadpool); the pool keeps one
    # connection to one thread at a time, which is all sqlite3 needs.
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, echo=echo, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, say when a transaction begins (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across a process kill
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def write_session(session: Session) -> Connection:
    """Begin the session's transaction as a writer: `BEGIN IMMEDIATE` on SQLite, plain elsewhere.

    Call it first, before anything else runs in the session's transaction.
    """
    if session.in_transaction():
        raise RuntimeError("a write transaction must begin on a session with none open")
    return session.connection(execution_options={SQLITE_BEGIN: "IMMEDIATE"})
