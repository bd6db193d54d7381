"""`/console/reports`: deposits and pickups per day, dwell time, occupancy by hour, expiries and
returns, usage by carrier, for a period at the account's sites; every table also as CSV.

The charts are drawn in the browser by Apache ECharts, vendored from its npm package (see
static/echarts/VERSION) and served from here: the page's data rides in `data-` attributes, as
the console's Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, Response

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.csv_response import csv_response
from cloud.console.web import render
from cloud.core.access import SYSTEM, Action
from cloud.errors import InvalidInput, NotFound
from cloud.services import reports

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
# The only files served here, each with its type: a fixed list, never a path from the request.
VENDOR = {
    "echarts.min.js": (STATIC / "echarts" / "echarts.min.js", "text/javascript"),
    "reports.js": (STATIC / "reports.js", "text/javascript"),
}
DEFAULT_DAYS = 14


@router.get("/console/vendor/{name}")
def vendor_asset(name: str) -> Response:
    found = VENDOR.get(name)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such console asset")
    path, media_type = found
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})


def _period(first: str, last: str, now: datetime) -> tuple[date, date]:
    today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()
    try:
        end = date.fromisoformat(last) if last else today
        start = date.fromisoformat(first) if first else end - timedelta(days=DEFAULT_DAYS - 1)
    except ValueError:
        end, start = today, today - timedelta(days=DEFAULT_DAYS - 1)
    return start, end


def _build(session, user, now, first: str, last: str, site: str) -> reports.Reports:
    start, end = _period(first, last, now)
    try:
        return reports.build(
            session=session,
            principal=user.principal,
            first=start,
            last=end,
            now=now,
            site_id=site or None,
        )
    except NotFound:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user) from None
    except InvalidInput:
        return reports.build(
            session=session,
            principal=user.principal,
            first=end - timedelta(days=DEFAULT_DAYS - 1),
            last=end,
            now=now,
            site_id=site or None,
        )


@router.get("/console/reports")
def reports_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    first: str = "",
    last: str = "",
    site: str = "",
) -> Response:
    auth.check(user, Action.READ_REPORTS, SYSTEM)
    built = _build(session, user, now, first, last, site)
    charts = {key: json.dumps([table.columns, table.rows]) for key, table in built.tables.items()}
    return render(
        request,
        "reports.html",
        user=user,
        built=built,
        charts=charts,
        first=built.period.first.isoformat(),
        last=built.period.last.isoformat(),
        site=site,
        sites=reports.sites_for(session=session, principal=user.principal),
        keys=reports.KEYS,
    )


@router.get("/console/reports/{key}.csv")
def report_csv(
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    key: str,
    first: str = "",
    last: str = "",
    site: str = "",
) -> Response:
    auth.check(user, Action.READ_REPORTS, SYSTEM)
    if key not in reports.KEYS:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
    built = _build(session, user, now, first, last, site)
    name = f"{key}-{built.period.first.isoformat()}-{built.period.last.isoformat()}.csv"
    return csv_response(reports.to_csv(built.tables[key]), name)
