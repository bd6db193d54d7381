"""The cloud's settings for the `locker cloud ...` commands: a refused setting is one paragraph.

`CloudSettings` from the environment, or exit with a readable message (no traceback). Commands
that sign or seal (`serve`, `worker`, `cabinet add`) also need the secret key: the check is the
settings' own `require_secret_key`, so the API, the worker and the registry refuse alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cloud.settings import CloudSettings

# A setting is missing or refused: like a usage error (the cabinet daemon's bad config is 2 too).
EXIT_BAD_SETTINGS = 2


def cloud_settings(*, need_secret: bool) -> CloudSettings:
    """Return the cloud's settings; exit 2 with the reason if they are refused.

    `need_secret`: the command signs or seals, so the secret key must be set as well.
    """
    from cloud.settings import SettingsError, load_settings

    try:
        settings = load_settings()
        if need_secret:
            settings.require_secret_key()
    except SettingsError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(EXIT_BAD_SETTINGS) from None
    return settings


def check_secret_opens_the_database(engine: Engine, settings: CloudSettings) -> None:
    """Exit 2 if the secret key does not unseal the database's code keys (another key's)."""
    from sqlmodel import Session

    from cloud.db.repo import seal_key_opens_code_keys
    from cloud.settings import SECRET_KEY_ENV

    with Session(engine) as session:
        opens = seal_key_opens_code_keys(session=session, seal_key=settings.require_secret_key())
    if not opens:
        typer.echo(
            f"error: {SECRET_KEY_ENV} does not open the cabinets' code keys in this database: "
            "it is not the key they were sealed with. Set the key this database was set up "
            "with (every API and worker shares one).",
            err=True,
        )
        raise typer.Exit(EXIT_BAD_SETTINGS)
