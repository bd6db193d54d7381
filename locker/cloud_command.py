"""`locker cloud ...`: the cloud service: database, workers, API, registry."""

import typer

app = typer.Typer(help="The cloud service: database, workers, API, registry.", no_args_is_help=True)
