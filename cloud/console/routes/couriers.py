"""`/console/couriers`: a carrier's own couriers and their parcels in the lockers now."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloud.api.deps import SessionDep
from cloud.console import auth
from cloud.console.web import render
from cloud.core.access import Action, Resource, ResourceKind
from cloud.services import console_views

router = APIRouter(include_in_schema=False)


@router.get("/console/couriers")
def couriers_page(request: Request, session: SessionDep, user: auth.ConsoleUserDep) -> Response:
    auth.check(user, Action.READ_COURIERS, Resource(ResourceKind.SYSTEM))
    rows = console_views.carrier_couriers(session=session, principal=user.principal)
    return render(request, "couriers.html", user=user, rows=rows)
