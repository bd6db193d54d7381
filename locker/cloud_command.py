"""`locker cloud ...`: the cloud service: database, workers, API, registry."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

app = typer.Typer(help="The cloud service: database, workers, API, registry.", no_args_is_help=True)

db_app = typer.Typer(help="The cloud's database: migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help=(
            "SQLAlchemy URL of the database (sqlite:///PATH or postgresql+psycopg://...). "
            "Default: LOCKER_CLOUD_DATABASE_URL, else SQLite in the data dir."
        ),
        show_default=False,
    ),
]


def _database_url(url: str | None) -> str:
    if url:
        return url
    from cloud.settings import CloudSettings

    return CloudSettings().database_url


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _fail(what: str, err: Exception) -> NoReturn:
    reason = " ".join(str(err).split())[:300] or type(err).__name__
    typer.echo(f"error: {what}: {reason}", err=True)
    raise typer.Exit(1) from err


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    revision: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head",
) -> None:
    """Create or upgrade the cloud's tables (Alembic migrations), printing each step."""
    from cloud.db.migrate import current_revision, upgrade

    url = _database_url(database_url)
    typer.echo(f"database: {_shown(url)}")
    try:
        before = current_revision(url)
        typer.echo(f"at revision: {before or '(empty)'}")
        upgrade(url, revision, echo=typer.echo)
        after = current_revision(url)
    except Exception as err:  # a CLI reports the reason in one line instead of a traceback
        _fail("upgrade failed", err)
    if after == before:
        typer.echo(f"already at {after}: nothing to do")
    else:
        typer.echo(f"now at revision: {after}")


@db_app.command("current")
def db_current(database_url: DatabaseUrl = None) -> None:
    """Print the database's revision and the newest one this version ships."""
    from cloud.db.migrate import current_revision, head_revision

    url = _database_url(database_url)
    try:
        current = current_revision(url)
    except Exception as err:
        _fail("cannot read the revision", err)
    head = head_revision()
    state = "up to date" if current == head else "needs `locker cloud db upgrade`"
    typer.echo(f"database: {_shown(url)}")
    typer.echo(f"current: {current or '(empty)'}; head: {head} ({state})")
