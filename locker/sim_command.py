"""`locker sim`: serve a simulated RS485 lock-board bus on a pseudo-terminal."""

import typer


def sim() -> None:
    """Serve a simulated lock-board bus (being written)."""
    raise typer.Exit(code=1)
