"""`/statements`: a carrier's courier statement (对账单) for a month, as JSON, CSV or XLSX.

Only a key bound to that carrier may read it; any other key gets the 404 an unknown carrier
gets (cloud.core.access: out of scope answers as missing). The CSV streams from the database in
chunks, so a month of a million deposits is sent in bounded memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlmodel import Session

from cloud.api.access import ErpPrincipalDep, enforce
from cloud.api.deps import NowDep, SessionDep
from cloud.api.schemas import error_responses
from cloud.core import statements as st
from cloud.core.access import Action, Principal, Resource, ResourceKind, decide
from cloud.services import statements

router = APIRouter(prefix="/statements", tags=["statements"])

CarrierQuery = Annotated[
    str, Query(min_length=1, max_length=100, description="The carrier the statement is of")
]
PeriodQuery = Annotated[
    str | None,
    Query(
        pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
        description="A calendar month, YYYY-MM, in each site's time zone",
        examples=["2026-12"],
    ),
]
FromQuery = Annotated[
    datetime | None,
    Query(
        alias="from",
        description="Instead of period: the start of an explicit range (with "
        "a UTC offset); a live report, never closed",
    ),
]
ToQuery = Annotated[
    datetime | None, Query(alias="to", description="The end of the range (excluded)")
]
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_ERRORS = error_responses(401, 403, 404, 409, 422)  # 409: too many lines for JSON or XLSX


# A file route's error answers are still JSON: FastAPI would list a `model` response under the
# route's own media type (text/csv), so name the schema under application/json explicitly.
_FILE_ERRORS = {
    code: {
        "description": entry["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}},
    }
    for code, entry in _ERRORS.items()
}


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


class XlsxResponse(StreamingResponse):
    media_type = XLSX_TYPE


class StatementPublic(BaseModel):
    """A statement: its lines (columns as in the CSV) and totals per currency, in minor units."""

    carrier: str
    period: str
    closed: bool
    lines: list[dict[str, object]]
    totals: dict[str, dict[str, int]]


Selection = st.Period | st.Range


def _checked(
    session: Session,
    principal: Principal,
    carrier: str,
    period: str | None,
    start: datetime | None,
    end: datetime | None,
) -> Selection:
    exists = statements.carrier_exists(session=session, carrier_id=carrier)
    resource = Resource(ResourceKind.CARRIER, carrier) if exists else None
    enforce(decide(principal, Action.READ_SETTLEMENTS, resource), f"no carrier {carrier!r}")
    if period is not None:
        if start is not None or end is not None:
            raise statements.StatementInputError(
                "give period, or from and to, not both", field="period", location="query"
            )
        return statements.parse_period(period)
    return statements.parse_range(start, end)


def _filename(carrier: str, period: Selection, ext: str) -> dict[str, str]:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{carrier}-{period}")
    return {"Content-Disposition": f'attachment; filename="statement-{safe}.{ext}"'}


def _csv(request: Request, carrier: str, period: Selection, now: NowDep) -> StreamingResponse:
    body = statements.stream_csv(
        engine=request.app.state.engine, carrier_id=carrier, period=period, now=now
    )
    return CsvResponse(body, media_type=CSV_TYPE, headers=_filename(carrier, period, "csv"))


@router.get(
    "",
    response_model=StatementPublic,
    responses=_ERRORS | {200: {"content": {"text/csv": {}}}},
)
def get_statement(
    request: Request,
    carrier: CarrierQuery,
    session: SessionDep,
    principal: ErpPrincipalDep,
    now: NowDep,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> StatementPublic | StreamingResponse:
    """The carrier's statement for a month (`period`) or a range (`from`, `to`: a live report);
    `Accept: text/csv` streams it as CSV instead."""
    month = _checked(session, principal, carrier, period, start, end)
    if "text/csv" in request.headers.get("accept", ""):
        return _csv(request, carrier, month, now)
    found = statements.statement(session=session, carrier_id=carrier, period=month, now=now)
    return StatementPublic.model_validate(found, from_attributes=True)


@router.get(".csv", response_class=CsvResponse, responses=_FILE_ERRORS)
def get_statement_csv(
    request: Request,
    carrier: CarrierQuery,
    session: SessionDep,
    principal: ErpPrincipalDep,
    now: NowDep,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> StreamingResponse:
    """The statement as CSV, streamed: the lines, then a `#total` row per currency."""
    return _csv(request, carrier, _checked(session, principal, carrier, period, start, end), now)


def _file_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    with spool:
        spool.seek(0)
        while chunk := spool.read(64 * 1024):
            yield chunk


@router.get(".xlsx", response_class=XlsxResponse, responses=_FILE_ERRORS)
def get_statement_xlsx(
    carrier: CarrierQuery,
    session: SessionDep,
    principal: ErpPrincipalDep,
    now: NowDep,
    period: PeriodQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> StreamingResponse:
    """The statement as an XLSX workbook (one sheet, the CSV's columns and totals)."""
    month = _checked(session, principal, carrier, period, start, end)
    # Spooled to disk past 8 MiB: a big month's workbook is not held in memory.
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - streamed
    try:
        statements.write_xlsx(
            statements.lines(session=session, carrier_id=carrier, period=month, now=now), spool
        )
    except BaseException:
        spool.close()
        raise
    session.rollback()
    return XlsxResponse(_file_chunks(spool), headers=_filename(carrier, month, "xlsx"))
