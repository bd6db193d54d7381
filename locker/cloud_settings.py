"""The cloud's settings for the `locker cloud ...` commands: a refused setting is one paragraph.

`CloudSettings` from the environment, or exit with a readable message (no traceback). Commands
that sign or seal (`serve`, `worker`, `cabinet add`) also need the secret key: the check is the
settings' own `require_secret_key`, so the API, the worker and the registry refuse alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
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
