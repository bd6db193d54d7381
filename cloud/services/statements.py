"""Courier settlement: the price table (audited), statements live or frozen, CSV/XLSX/JSON.

A statement of an open period is computed from the parcels as they are now; closing a period
freezes its lines as rows (`statement_lines`) and it is read from them ever after. Exports
stream: lines are made one by one from chunked reads and written as they come, with running
totals, so memory does not grow with the number of deposits.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Engine
from sqlmodel import Session

from cloud import errors
from cloud.core import statements as st
from cloud.core.access import Action, AuditEntry, Principal, ResourceKind
from cloud.db import statements as db
from cloud.db.engine import write_session
from cloud.db.models import SitePrice
from cloud.services import audit

SIZES = ("S", "M", "L", "XL")
CSV_FLUSH_ROWS = 1000  # rows per chunk a streamed CSV sends
# The JSON answer holds the whole statement: past this many lines it refuses and names the CSV.
MAX_JSON_LINES = 10_000
# A worksheet holds 1,048,576 rows (Excel's limit): a header, the lines, a total per currency.
XLSX_MAX_ROWS = 1_048_576


class StatementInputError(errors.InvalidInput):
    """A price or a statement request the rules refuse; nothing was written."""


def parse_period(text: str) -> st.Period:
    try:
        return st.Period.parse(text)
    except st.StatementError as err:
        raise StatementInputError(str(err), field="period", location="query") from None


def parse_range(start: datetime | None, end: datetime | None) -> st.Range:
    if start is None or end is None:
        missing = "from" if start is None else "to"
        raise StatementInputError(
            f"give period=YYYY-MM, or both from and to ({missing} is missing)",
            field=missing,
            location="query",
        )
    try:
        return st.Range.of(start, end)
    except st.StatementError as err:
        raise StatementInputError(str(err), field="to", location="query") from None


def set_price(
    *,
    session: Session,
    site_id: str,
    carrier_id: str,
    size: str,
    amount_minor: int,
    currency: str,
    now: datetime,
    actor: Principal | None = None,
) -> SitePrice:
    """Set what `carrier_id` pays per deposit in a `size` door at `site_id`; audited; commits."""
    try:
        amount_minor, currency = st.check_price(amount_minor, currency.strip().upper())
    except st.StatementError as err:
        raise StatementInputError(str(err), field="amount_minor") from None
    if size not in SIZES:
        raise StatementInputError(
            f"size must be one of {', '.join(SIZES)}, not {size!r}", field="size"
        )
    write_session(session)
    try:
        if db.get_site(session=session, site_id=site_id) is None:
            raise StatementInputError(f"no site {site_id!r}", field="site")
        if db.get_carrier(session=session, carrier_id=carrier_id) is None:
            raise StatementInputError(f"no carrier {carrier_id!r}", field="carrier")
        row, before = db.put_price(
            session=session,
            site_id=site_id,
            carrier_id=carrier_id,
            size=size,
            amount_minor=amount_minor,
            currency=currency,
            now=now,
        )
        who = actor or audit.cli_principal()
        detail: dict[str, object] = {
            "op": "set price",
            "carrier": carrier_id,
            "size": size,
            "amount_minor": amount_minor,
            "currency": currency,
            "before": None if before is None else f"{before.amount_minor} {before.currency}",
        }
        entry = AuditEntry(
            who.kind, who.id, Action.MANAGE_REGISTRY, ResourceKind.SITE, site_id, detail=detail
        )
        audit.record(session=session, entry=entry, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return row


def list_prices(
    *, session: Session, site_id: str | None = None, carrier_id: str | None = None
) -> list[SitePrice]:
    return list(db.prices(session=session, site_id=site_id, carrier_id=carrier_id))


def carrier_exists(*, session: Session, carrier_id: str) -> bool:
    found = db.get_carrier(session=session, carrier_id=carrier_id) is not None
    session.rollback()
    return found


def carriers(*, session: Session) -> list[tuple[str, str]]:
    """Every carrier as (id, name)."""
    found = db.carriers(session=session)
    session.rollback()
    return found


@dataclass(frozen=True)
class Preview:
    """A statement as a page shows it: its first `lines` and the totals of all of them."""

    carrier: str
    period: str
    closed: bool
    lines: list[st.Line]
    line_count: int
    totals: dict[str, dict[str, int]]


def preview(
    *, session: Session, carrier_id: str, period: st.Period, now: datetime, limit: int = 200
) -> Preview:
    """The month's statement for a page: the totals of every line, the first `limit` lines
    (the CSV and XLSX downloads hold them all)."""
    closed = is_closed(session=session, carrier_id=carrier_id, period=period)
    totals = st.Totals()
    shown: list[st.Line] = []
    for line in lines(session=session, carrier_id=carrier_id, period=period, now=now):
        totals.add(line)
        if len(shown) < limit:
            shown.append(line)
    session.rollback()
    return Preview(carrier_id, str(period), closed, shown, totals.lines, totals.as_dict())


def is_closed(*, session: Session, carrier_id: str, period: st.Period) -> bool:
    return period in db.closed_periods(session=session, carrier_id=carrier_id)


def lines(
    *, session: Session, carrier_id: str, period: st.Period | st.Range, now: datetime
) -> Iterator[st.Line]:
    """Yield the statement's lines: frozen if `period` is closed, else computed at `now`; an
    explicit range is always computed at `now`."""
    if isinstance(period, st.Range):
        for deposit in db.iter_between(
            session=session, carrier_id=carrier_id, start=period.start, end=period.end
        ):
            yield st.line_of(deposit, now)
        return
    closed = db.closed_periods(session=session, carrier_id=carrier_id)
    if period in closed:
        yield from db.iter_frozen(session=session, carrier_id=carrier_id, period=period)
        return
    for deposit in db.iter_deposits(
        session=session, carrier_id=carrier_id, period=period, closed=closed
    ):
        yield st.line_of(deposit, now)


def close_period(
    *,
    session: Session,
    carrier_id: str,
    period: st.Period,
    now: datetime,
    actor: Principal | None = None,
) -> st.Totals:
    """Freeze `period`'s lines for `carrier_id`; audited; commits. Conflict if closed already
    or if the month has not ended at every site yet."""
    if db.get_carrier(session=session, carrier_id=carrier_id) is None:
        raise StatementInputError(f"no carrier {carrier_id!r}", field="carrier")
    policies = db.site_policies(session=session)
    session.rollback()
    ends = [period.bounds(p.timezone)[1] for p in policies.values()] or [period.bounds("UTC")[1]]
    if now < max(ends):
        raise errors.Conflict(
            f"period {period} has not ended yet: it can be closed from {max(ends).isoformat()}"
        )
    write_session(session)
    try:
        if is_closed(session=session, carrier_id=carrier_id, period=period):
            raise errors.Conflict(f"period {period} of {carrier_id} is closed already")
        totals = st.Totals()
        batch: list[st.Line] = []
        for line in lines(session=session, carrier_id=carrier_id, period=period, now=now):
            totals.add(line)
            batch.append(line)
            if len(batch) >= db.CHUNK:
                db.add_lines(session=session, carrier_id=carrier_id, period=period, lines=batch)
                batch = []
        db.add_lines(session=session, carrier_id=carrier_id, period=period, lines=batch)
        db.add_closing(session=session, carrier_id=carrier_id, period=period, now=now)
        who = actor or audit.cli_principal()
        entry = AuditEntry(
            who.kind,
            who.id,
            Action.MANAGE_REGISTRY,
            ResourceKind.SYSTEM,
            f"{carrier_id}/{period}",
            detail={"op": "close statement", "lines": totals.lines},
        )
        audit.record(session=session, entry=entry, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return totals


# --- exports --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    carrier: str
    period: str
    closed: bool
    lines: list[dict[str, object]]
    totals: dict[str, dict[str, int]]


def statement(
    *, session: Session, carrier_id: str, period: st.Period | st.Range, now: datetime
) -> Statement:
    """The whole statement in memory (the JSON answer); exports of big months use CSV."""
    closed = isinstance(period, st.Period) and is_closed(
        session=session, carrier_id=carrier_id, period=period
    )
    totals = st.Totals()
    rows: list[dict[str, object]] = []
    for line in lines(session=session, carrier_id=carrier_id, period=period, now=now):
        if len(rows) >= MAX_JSON_LINES:
            session.rollback()
            raise errors.Conflict(
                f"the statement has more than {MAX_JSON_LINES:,} lines: fetch it as CSV "
                "(/api/v1/statements.csv, streamed) or XLSX"
            )
        totals.add(line)
        rows.append(st.line_json(line))
    session.rollback()
    return Statement(carrier_id, str(period), closed, rows, totals.as_dict())


def csv_chunks(
    line_iter: Iterator[st.Line], on_line: Callable[[], Any] | None = None
) -> Iterator[str]:
    """Yield the CSV text in chunks: a header, the lines, then one `#total` row per currency."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(st.CSV_COLUMNS)
    totals = st.Totals()
    pending = 0
    for line in line_iter:
        totals.add(line)
        writer.writerow(st.line_row(line))
        pending += 1
        if on_line is not None:
            on_line()
        if pending >= CSV_FLUSH_ROWS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    writer.writerows(st.total_rows(totals))
    yield buffer.getvalue()


def stream_csv(
    *, engine: Engine, carrier_id: str, period: st.Period | st.Range, now: datetime
) -> Iterator[bytes]:
    """The CSV as bytes, read in its own session (it outlives the request's)."""
    with Session(engine) as session:
        for chunk in csv_chunks(
            lines(session=session, carrier_id=carrier_id, period=period, now=now)
        ):
            yield chunk.encode()


def write_csv(
    line_iter: Iterator[st.Line], out: IO[str], on_line: Callable[[], Any] | None = None
) -> None:
    for chunk in csv_chunks(line_iter, on_line):
        out.write(chunk)


def write_xlsx(
    line_iter: Iterator[st.Line], out: IO[bytes] | str, on_line: Callable[[], Any] | None = None
) -> None:
    """Write the statement as XLSX (openpyxl's write-only mode: rows go out as they come)."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("statement")
    sheet.append([st.COLUMN_LABELS[name] for name in st.CSV_COLUMNS])
    totals = st.Totals()
    try:
        for line in line_iter:
            # 1 header + the lines + at most a few totals must fit: leave 16 rows for the totals.
            if totals.lines >= XLSX_MAX_ROWS - 1 - 16:
                raise errors.Conflict(
                    f"the statement has more lines than a worksheet holds ({XLSX_MAX_ROWS:,} "
                    "rows): export it as CSV"
                )
            totals.add(line)
            sheet.append(list(st.line_row(line)))
            if on_line is not None:
                on_line()
    except BaseException:
        sheet.close()  # ends openpyxl's writer and removes its temporary file
        raise
    for row in st.total_rows(totals):
        sheet.append(list(row))
    book.save(out)
