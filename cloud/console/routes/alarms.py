"""`/console/alarms`: open (or all) alarms in the account's scope, acknowledge and resolve them.

Reads through `cloud.services.alarms`, which narrows the list by the account's cabinets and
decides each act on the alarm's cabinet (another site's alarm is the same 404 as a missing one).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import anyio
from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from sse_starlette import EventSourceResponse

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.csv_response import csv_response
from cloud.console.routes.cabinet import grid_updates
from cloud.console.web import render, templates, translator
from cloud.core.access import SYSTEM, Action
from cloud.core.alarms import AlarmKind
from cloud.errors import CloudError, Conflict, Forbidden, NotFound
from cloud.services import alarms, reports
from cloud.services.console_auth import session_user
from cloud.services.reports import rows_to_csv

router = APIRouter(include_in_schema=False)

CSV_COLUMNS = (
    "id", "cabinet", "door", "kind", "severity", "first_seen", "last_seen", "count",
    "acknowledged_by", "acknowledged_at", "note", "resolved_by", "resolved_at", "detail",
)  # fmt: skip


def _list(session: SessionDep, user: auth.ConsoleUser, show: str, site: str, kind: str):
    return alarms.list_for(
        session=session,
        principal=user.principal,
        open_only=show != "all",
        site_id=site or None,
        kind=kind or None,
        limit=500,
    )


@router.get("/console/alarms")
def alarms_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    show: str = "open",
    site: str = "",
    kind: str = "",
    done: str = "",
) -> Response:
    auth.check(user, Action.READ_ALARMS, SYSTEM)
    rows = _list(session, user, show, site, kind)
    sites = reports.sites_for(session=session, principal=user.principal)
    return render(
        request,
        "alarms.html",
        user=user,
        rows=rows,
        show=show,
        site=site,
        kind=kind,
        kinds=[k.value for k in AlarmKind],
        sites=sites,
        done=done,
        now=now,
    )


@router.get("/console/alarms/live")
async def alarms_live(
    request: Request,
    session: SessionDep,
    user: auth.ConsoleUserDep,
    show: str = "open",
    site: str = "",
    kind: str = "",
) -> Response:
    """The alarms table pushed again (server-sent events) whenever an alarm in the list is
    raised, repeats, is acknowledged or resolved: the cabinet page's stream, on this list."""
    auth.check(user, Action.READ_ALARMS, SYSTEM)
    engine: Engine = request.app.state.engine
    clock: Callable[[], datetime] = request.app.state.clock
    t = translator(request)
    token = request.cookies.get(auth.COOKIE)

    def snapshot() -> tuple[object, str, str]:
        with Session(engine, expire_on_commit=False) as s:
            rows = _list(s, user, show, site, kind)
        fingerprint = tuple(
            (r.alarm.id, r.alarm.count, r.alarm.last_seen_at, r.alarm.acked_at, r.alarm.cleared_at)
            for r in rows
        )
        context = {
            "rows": rows, "t": t, "lang": t.lang, "now": clock(), "csrf": user.csrf_token,
        }  # fmt: skip
        table = templates.get_template("_alarm_rows.html").render(context)
        return fingerprint, table, t("alarms.count", n=len(rows))

    def still_signed_in() -> bool:
        with Session(engine) as s:
            return session_user(session=s, token=token, now=clock()) is not None

    return EventSourceResponse(
        grid_updates(
            snapshot, still_signed_in, is_disconnected=request.is_disconnected, sleep=anyio.sleep
        ),
        ping=15,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/console/alarms.csv")
def alarms_csv(
    session: SessionDep,
    user: auth.ConsoleUserDep,
    show: str = "open",
    site: str = "",
    kind: str = "",
) -> Response:
    auth.check(user, Action.READ_ALARMS, SYSTEM)
    rows = [
        (
            r.alarm.id,
            r.alarm.cabinet_id,
            r.alarm.compartment or "",
            r.alarm.kind,
            r.alarm.severity,
            r.alarm.at.isoformat(),
            (r.alarm.last_seen_at or r.alarm.at).isoformat(),
            r.alarm.count,
            r.alarm.acked_by or "",
            r.alarm.acked_at.isoformat() if r.alarm.acked_at else "",
            r.alarm.ack_note,
            r.alarm.resolved_by or "",
            r.alarm.cleared_at.isoformat() if r.alarm.cleared_at else "",
            r.alarm.detail,
        )
        for r in _list(session, user, show, site, kind)
    ]
    return csv_response(rows_to_csv(CSV_COLUMNS, rows), "alarms.csv")


def _act(request: Request, session, now, user, alarm_id: int, note: str, *, resolve: bool):
    try:
        act = alarms.resolve if resolve else alarms.acknowledge
        act(
            session=session,
            principal=user.principal,
            alarm_id=alarm_id,
            note=note,
            now=now,
            by=user.username,
        )
    except NotFound:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user) from None
    except Forbidden:
        raise auth.ConsoleRefusal(status.HTTP_403_FORBIDDEN, "error.forbidden", user) from None
    except Conflict:
        return RedirectResponse("/console/alarms?done=stale", status.HTTP_303_SEE_OTHER)
    except CloudError:
        return RedirectResponse("/console/alarms?done=bad_note", status.HTTP_303_SEE_OTHER)
    done = "resolved" if resolve else "acked"
    return RedirectResponse(f"/console/alarms?done={done}", status.HTTP_303_SEE_OTHER)


Note = Annotated[str, Form(max_length=2000)]


@router.post("/console/alarms/{alarm_id}/acknowledge")
def acknowledge(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    _csrf: auth.CsrfFormDep,
    alarm_id: int,
    note: Note = "",
) -> Response:
    return _act(request, session, now, user, alarm_id, note, resolve=False)


@router.post("/console/alarms/{alarm_id}/resolve")
def resolve(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    _csrf: auth.CsrfFormDep,
    alarm_id: int,
    note: Note = "",
) -> Response:
    return _act(request, session, now, user, alarm_id, note, resolve=True)
