"""`locker cabinet ...`: run and inspect the edge daemon of one cabinet."""

import typer

app = typer.Typer(help="The edge daemon of one cabinet.", no_args_is_help=True)
