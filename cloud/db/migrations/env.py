"""Alembic's environment: the cloud's metadata, run on an engine from `cloud.db.engine`."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import cloud.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from cloud.db.engine import make_engine
from cloud.db.migrate import _on_version_apply

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    echo = config.attributes.get("echo")
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # Batch mode rebuilds a table (copy, drop, rename); with foreign keys on, the
                # drop would cascade-delete the rows that point at it (a parcel's notices).
                # The pragma is a no-op inside a transaction: set it on the bare connection.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
                render_as_batch=sqlite,
                compare_type=True,
                on_version_apply=_on_version_apply(echo) if echo else None,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
