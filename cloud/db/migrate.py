"""Run the Alembic migrations programmatically, from an installed package (no alembic.ini)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from cloud.db.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

Echo = Callable[[str], None]


def alembic_config(url: str, *, echo: Echo | None = None) -> Config:
    """Return an Alembic config for `url`, with `script_location` set to this package's folder."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # `%` is ConfigParser interpolation: a password may contain one.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["database_url"] = url
    if echo is not None:
        config.attributes["echo"] = echo
    return config


def upgrade(url: str, revision: str = "head", *, echo: Echo | None = None) -> None:
    """Upgrade the database at `url` to `revision`, echoing each migration as it runs."""
    command.upgrade(alembic_config(url, echo=echo), revision)


def head_revision() -> str | None:
    """Return the newest revision the package ships."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    """Return the revision the database at `url` is at (None: never migrated)."""
    engine = make_engine(url)
    try:
        return current_revision_of(engine)
    finally:
        engine.dispose()


def current_revision_of(engine: Engine) -> str | None:
    """Return the revision the database behind `engine` is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _on_version_apply(echo: Echo) -> Callable[..., Any]:
    def report(*, step: Any, **_: Any) -> None:
        revision = step.up_revision if step.is_upgrade else step.down_revision
        arrow = "upgrade" if step.is_upgrade else "downgrade"
        doc = getattr(revision, "doc", "") if revision is not None else ""
        source = ", ".join(step.source_revision_ids) or "(empty)"
        echo(f"{arrow} {source} -> {', '.join(step.destination_revision_ids)}: {doc}")

    return report
