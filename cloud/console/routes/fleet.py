"""`/console/fleet`: every cabinet in the account's scope, sortable and filterable by site."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.web import render
from cloud.core.access import SYSTEM, Action
from cloud.services import console_views

router = APIRouter(include_in_schema=False)


@router.get("/console/fleet")
def fleet_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    site: str = "",
    sort: str = "status",
) -> Response:
    auth.check(user, Action.READ_CABINET, SYSTEM)
    sort = sort if sort in console_views.SORT_KEYS else "status"
    fleet = console_views.fleet(
        session=session, principal=user.principal, now=now, site_id=site or None, sort=sort
    )
    return render(request, "fleet.html", user=user, fleet=fleet, site=site, sort=sort, now=now)
