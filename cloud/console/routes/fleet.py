"""`/console/fleet`: every cabinet in the account's scope, sortable and filterable by site."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
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
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    auth.check(user, Action.READ_CABINET, SYSTEM)
    sort = sort if sort in console_views.SORT_KEYS else "status"
    fleet = console_views.fleet(
        session=session, principal=user.principal, now=now, site_id=site or None, sort=sort,
        page=page,
    )  # fmt: skip
    return render(request, "fleet.html", user=user, fleet=fleet, site=site, sort=sort, now=now)
