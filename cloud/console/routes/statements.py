"""`/console/statements`: a carrier's settlement statement (对账单) of a month, on the page and
as CSV or XLSX.

A carrier account reads its own carrier's statements only (another carrier's is the 404 an
unknown one gets); an operator admin picks any carrier. A site manager has no statements: a
statement spans every site the carrier's couriers used (docs/who-may-do-what.md). The numbers are
`cloud.services.statements`' — the same lines, totals and files as `/api/v1/statements`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from sqlmodel import Session

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.web import PAGE_HEADERS, render
from cloud.core import statements as st
from cloud.core.access import Action, PrincipalKind, Resource, ResourceKind
from cloud.errors import InvalidInput
from cloud.services import statements

router = APIRouter(include_in_schema=False)

# The month a page opens on is the operator's (China Standard Time), as on the audit page.
ZONE = ZoneInfo("Asia/Shanghai")
SHOWN_LINES = 200  # on the page; the downloads hold every line
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _month(text: str, now: datetime) -> st.Period:
    try:
        return statements.parse_period(text) if text else st.Period.of(now, str(ZONE))
    except InvalidInput:
        return st.Period.of(now, str(ZONE))


def _carrier(session: Session, user: auth.ConsoleUser, asked: str) -> tuple[str, list]:
    """The carrier whose statement is asked for, checked by `decide`; and the carriers the
    account may choose from (an operator's list; a carrier's own only)."""
    principal = user.principal
    if principal.kind is PrincipalKind.CARRIER:
        choices: list[tuple[str, str]] = []
        carrier = asked or principal.carrier_id or ""
    else:
        auth.check(user, Action.READ_SETTLEMENTS, Resource(ResourceKind.SYSTEM))
        choices = statements.carriers(session=session)
        carrier = asked or (choices[0][0] if choices else "")
    exists = bool(carrier) and statements.carrier_exists(session=session, carrier_id=carrier)
    auth.check(
        user, Action.READ_SETTLEMENTS, Resource(ResourceKind.CARRIER, carrier) if exists else None
    )
    return carrier, choices


def _filename(carrier: str, period: st.Period, ext: str) -> dict[str, str]:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{carrier}-{period}")
    return {**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="statement-{safe}.{ext}"'}


@router.get("/console/statements")
def statements_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    carrier: str = "",
    period: str = "",
) -> Response:
    chosen, choices = _carrier(session, user, carrier)
    month = _month(period, now)
    found = statements.preview(
        session=session, carrier_id=chosen, period=month, now=now, limit=SHOWN_LINES
    )
    return render(
        request,
        "statements.html",
        user=user,
        statement=found,
        carrier=chosen,
        carriers=choices,
        period=str(month),
        previous=str(month.previous()),
        following=str(month.next()),
        shown=SHOWN_LINES,
        zone=str(ZONE),
    )


@router.get("/console/statements.csv")
def statements_csv(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    carrier: str = "",
    period: str = "",
) -> Response:
    chosen, _ = _carrier(session, user, carrier)
    month = _month(period, now)
    body = statements.stream_csv(
        engine=request.app.state.engine, carrier_id=chosen, period=month, now=now
    )
    return StreamingResponse(
        body, media_type="text/csv; charset=utf-8", headers=_filename(chosen, month, "csv")
    )


def _file_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk


@router.get("/console/statements.xlsx")
def statements_xlsx(
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    carrier: str = "",
    period: str = "",
) -> Response:
    chosen, _ = _carrier(session, user, carrier)
    month = _month(period, now)
    # Spooled to disk past 8 MiB: a big month's workbook is not held in memory.
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - streamed
    try:
        statements.write_xlsx(
            statements.lines(session=session, carrier_id=chosen, period=month, now=now), spool
        )
    except BaseException:
        spool.close()
        raise
    session.rollback()
    return StreamingResponse(
        _file_chunks(spool), media_type=XLSX_TYPE, headers=_filename(chosen, month, "xlsx")
    )
