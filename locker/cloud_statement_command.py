"""`locker cloud price set|list`, `locker cloud statement` and `statement-close`: settlement.

Prices are registry acts (audited as the CLI's operator admin, like `locker cloud site add`).
A statement export streams from the database, with a progress bar for long months.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from locker.cloud_registry_command import DatabaseUrl, _registry

price_app = typer.Typer(
    help="The per-site price table of deposits (by carrier and door size).", no_args_is_help=True
)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@price_app.command("set")
def price_set(
    site: Annotated[str, typer.Option("--site", help="Site id.")],
    carrier: Annotated[str, typer.Option("--carrier", help="Carrier id.")],
    size: Annotated[str, typer.Option("--size", help="Door size: S, M, L or XL.")],
    amount_minor: Annotated[
        int, typer.Option("--amount-minor", help="Per deposit, in minor units (fen, cents).")
    ],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217, e.g. CNY.")] = "CNY",
    database_url: DatabaseUrl = None,
) -> None:
    """Set what CARRIER pays per deposit in a SIZE door at SITE (audited)."""
    from cloud.services.statements import set_price

    with _registry(database_url) as session:
        row = set_price(
            session=session,
            site_id=site,
            carrier_id=carrier,
            size=size,
            amount_minor=amount_minor,
            currency=currency,
            now=_now(),
        )
        typer.echo(
            f"price {row.site_id} {row.carrier_id} {row.size}: "
            f"{row.amount_minor} {row.currency} (minor units)"
        )


@price_app.command("list")
def price_list(
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    carrier: Annotated[str | None, typer.Option("--carrier", help="Only this carrier.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List the price table: site, carrier, size, amount (minor units), currency."""
    from cloud.services.statements import list_prices

    with _registry(database_url) as session:
        for row in list_prices(session=session, site_id=site, carrier_id=carrier):
            typer.echo(
                f"{row.site_id}\t{row.carrier_id}\t{row.size}\t{row.amount_minor}\t{row.currency}"
            )


class Format(StrEnum):
    csv = "csv"
    xlsx = "xlsx"
    json = "json"


def statement(
    carrier: Annotated[str, typer.Option("--carrier", help="Carrier id.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    period: Annotated[str | None, typer.Option("--period", help="Month, YYYY-MM.")] = None,
    start: Annotated[
        datetime | None,
        typer.Option(
            "--from",
            help="Instead of --period: a range's start (a live report).",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"],
        ),
    ] = None,
    end: Annotated[
        datetime | None,
        typer.Option(
            "--to", help="The range's end (excluded).", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]
        ),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv, xlsx or json.")] = Format.csv,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    database_url: DatabaseUrl = None,
) -> None:
    """Export CARRIER's statement (对账单) for PERIOD (or --from/--to, UTC when no offset is
    given) to OUT; CSV and XLSX stream."""
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TimeElapsedColumn

    from cloud import errors
    from cloud.services import statements as svc

    with _registry(database_url) as session:
        if not svc.carrier_exists(session=session, carrier_id=carrier):
            raise svc.StatementInputError(f"no carrier {carrier!r}")
        if period is not None:
            month: Any = svc.parse_period(period)
        else:
            month = svc.parse_range(_aware(start), _aware(end))
        now = _now()
        with Progress(
            SpinnerColumn(),
            "{task.description}",
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
            transient=True,
        ) as bar:
            task = bar.add_task(f"{carrier} {month}", total=None)

            def tick() -> None:
                bar.advance(task)

            lines = svc.lines(session=session, carrier_id=carrier, period=month, now=now)
            try:
                _write(
                    fmt,
                    lines,
                    out,
                    tick,
                    lambda: svc.statement(
                        session=session, carrier_id=carrier, period=month, now=now
                    ),
                )
            except errors.Conflict as err:  # too many lines for a worksheet or for JSON
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(2) from None
    typer.echo(f"statement {carrier} {month} written to {out}")


def _write(
    fmt: Format,
    lines: Iterator[Any],
    out: Path,
    tick: Callable[[], None],
    json_statement: Callable[[], Any],
) -> None:
    """Write the lines to OUT as FMT (JSON asks for the whole statement instead)."""
    from cloud.services import statements as svc

    if fmt is Format.csv:
        with out.open("w", newline="", encoding="utf-8") as handle:
            svc.write_csv(lines, handle, tick)
    elif fmt is Format.xlsx:
        svc.write_xlsx(lines, str(out), tick)
    else:
        out.write_text(json.dumps(json_statement().__dict__, ensure_ascii=False, indent=1))


def statement_close(
    carrier: Annotated[str, typer.Option("--carrier", help="Carrier id.")],
    period: Annotated[str, typer.Option("--period", help="Month, YYYY-MM (ended).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Close PERIOD for CARRIER: its lines are frozen; late deposits go to the next month."""
    from cloud import errors
    from cloud.services import statements as svc

    with _registry(database_url) as session:
        try:
            totals = svc.close_period(
                session=session, carrier_id=carrier, period=svc.parse_period(period), now=_now()
            )
        except errors.Conflict as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
    typer.echo(
        f"statement {carrier} {period} closed: {totals.lines} lines, {json.dumps(totals.as_dict())}"
    )
