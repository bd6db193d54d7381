"""`/console/parcels`: search (tracking no, order no, a phone's last 4 digits; state and age),
one parcel's timeline, the aged-parcel report; each list also as CSV. Phones are masked.

Reads through `cloud.services.parcel_search`, which narrows every list to the account's parcels
(`cloud.core.access.parcel_scope`) and answers another site's parcel as a missing one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.csv_response import csv_response
from cloud.console.web import render
from cloud.core.access import SYSTEM, Action
from cloud.core.parcels import Status
from cloud.errors import InvalidInput, NotFound
from cloud.services import parcel_search, reports
from cloud.services.parcel_search import ParcelHit

router = APIRouter(include_in_schema=False)

CSV_COLUMNS = (
    "tracking_no", "order_no", "status", "site", "cabinet", "door", "size", "phone",
    "carrier", "deposited_at", "left_at", "deadline", "age_hours", "overdue",
)  # fmt: skip
AGES = (1, 2, 3, 5, 7, 14, 30)


def _csv_rows(hits: list[ParcelHit]) -> list[tuple[object, ...]]:
    def iso(at):
        return at.isoformat() if at else ""

    return [
        (
            h.tracking_no,
            h.order_no or "",
            h.status,
            h.site_id,
            h.cabinet_id,
            h.compartment or "",
            h.size or "",
            h.phone_masked,
            h.carrier or "",
            iso(h.deposited_at),
            iso(h.left_locker_at),
            iso(h.deadline),
            round(h.age_s / 3600, 1) if h.age_s is not None else "",
            "yes" if h.overdue else "",
        )
        for h in hits
    ]


States = Annotated[list[str], Query()]


def _search(session, user, now, q: str, state: list[str], age: str, site: str):
    min_age = float(age) if age.replace(".", "", 1).isdigit() else None
    return parcel_search.search(
        session=session,
        principal=user.principal,
        now=now,
        query=q,
        statuses=[s for s in state if s],
        min_age_days=min_age,
        site_id=site or None,
        limit=200,
    )


@router.get("/console/parcels")
def parcels_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    q: str = "",
    state: States = [],  # noqa: B006  (FastAPI copies a query default)
    age: str = "",
    site: str = "",
) -> Response:
    auth.check(user, Action.READ_PARCEL, SYSTEM)
    error = None
    try:
        hits = _search(session, user, now, q, state, age, site)
    except InvalidInput as err:
        hits, error = [], str(err)
    return render(
        request,
        "parcels.html",
        user=user,
        hits=hits,
        q=q,
        state=state,
        age=age,
        site=site,
        error=error,
        states=[s.value for s in Status],
        ages=AGES,
        sites=reports.sites_for(session=session, principal=user.principal),
        query_string=request.url.query,
        now=now,
    )


@router.get("/console/parcels.csv")
def parcels_csv(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    q: str = "",
    state: States = [],  # noqa: B006
    age: str = "",
    site: str = "",
) -> Response:
    auth.check(user, Action.READ_PARCEL, SYSTEM)
    try:
        hits = _search(session, user, now, q, state, age, site)
    except InvalidInput:
        hits = []
    return csv_response(reports.rows_to_csv(CSV_COLUMNS, _csv_rows(hits)), "parcels.csv")


def _aged(session, user, now, days: float, site: str) -> list[ParcelHit]:
    return parcel_search.aged(
        session=session,
        principal=user.principal,
        now=now,
        min_age_days=max(0.0, min(days, 365.0)),
        site_id=site or None,
    )


@router.get("/console/parcels/aged")
def aged_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    days: float = 3,
    site: str = "",
) -> Response:
    auth.check(user, Action.READ_PARCEL, SYSTEM)
    return render(
        request,
        "parcels_aged.html",
        user=user,
        hits=_aged(session, user, now, days, site),
        days=days,
        site=site,
        ages=AGES,
        sites=reports.sites_for(session=session, principal=user.principal),
        now=now,
    )


@router.get("/console/parcels/aged.csv")
def aged_csv(
    session: SessionDep, now: NowDep, user: auth.ConsoleUserDep, days: float = 3, site: str = ""
) -> Response:
    auth.check(user, Action.READ_PARCEL, SYSTEM)
    rows = _csv_rows(_aged(session, user, now, days, site))
    return csv_response(reports.rows_to_csv(CSV_COLUMNS, rows), "aged-parcels.csv")


@router.get("/console/parcels/{parcel_row_id}")
def parcel_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    parcel_row_id: str,
) -> Response:
    auth.check(user, Action.READ_PARCEL, SYSTEM)
    try:
        hit, steps = parcel_search.timeline(
            session=session, principal=user.principal, parcel_row_id=parcel_row_id, now=now
        )
    except NotFound:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user) from None
    return render(request, "parcel.html", user=user, hit=hit, steps=steps, now=now)
