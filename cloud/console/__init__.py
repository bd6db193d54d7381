"""The operations console: server-rendered pages for operators, site managers and carriers.

`install(app)` adds its routes under /console and the handler that renders its refusals;
`locker cloud serve` serves it beside the API. docs/console.md describes the pages and how to
add one.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from cloud.console.auth import ConsoleRefusal
from cloud.console.routes import (
    alarms,
    assets,
    audit,
    cabinet,
    couriers,
    fleet,
    parcels,
    reports,
    signin,
    statements,
)
from cloud.console.web import render

PAGES = [signin, assets, fleet, cabinet, audit, couriers, alarms, parcels, reports, statements]


def install(app: FastAPI) -> None:
    """Mount the console's pages on `app` (under /console)."""
    for module in PAGES:
        app.include_router(module.router)
    app.add_exception_handler(ConsoleRefusal, _refused)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleRefusal)
    return render(
        request,
        "error.html",
        user=exc.user,
        status_code=exc.status_code,
        key=exc.key,
    )
