"""`/console/cabinets/{cab}`: one cabinet's doors, live, and the acts on a door.

The door grid is pushed again (server-sent events, `/live`) whenever the cabinet's fingerprint
changes: its applied event seq, presence, last seen, or any door's state. The worker applies
the cabinet's events to the database in another process; this one learns of them by reading
that fingerprint once a second (`POLL_S`: one primary-key read of the cabinet and its doors
per open page), so a change reaches an open page within about a second and a half.

Each act is two steps: a GET shows what will happen and asks for the reason (`confirm.html`),
the POST (with the session's CSRF token) does it and comes back to the cabinet page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

import anyio
from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine
from sqlmodel import Session
from sse_starlette import EventSourceResponse

from cloud import errors
from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.console import auth
from cloud.console.text import local_time
from cloud.console.web import render, templates, translator
from cloud.core.access import Action, Resource, ResourceKind
from cloud.services import console_acts, console_views
from cloud.services.console_auth import ConsoleUser, session_user

router = APIRouter(include_in_schema=False)

POLL_S = 1.0
RECHECK_SESSION_S = 60.0  # a stream whose session ended (signed out, idle, expired) stops
ACTS = ("open", "service-out", "service-in", "extend", "cancel", "return")
ACT_TITLES = {
    "open": "act.open",
    "service-out": "act.service_out",
    "service-in": "act.service_in",
    "extend": "act.extend",
    "cancel": "act.cancel_parcel",
    "return": "act.mark_return",
}
ACT_ACTIONS = {
    "open": Action.OPEN_DOOR_REMOTELY,
    "service-out": Action.SET_OUT_OF_SERVICE,
    "service-in": Action.SET_OUT_OF_SERVICE,
    "extend": Action.EXTEND_DEADLINE,
    "cancel": Action.CANCEL_PARCEL,
    "return": Action.CANCEL_PARCEL,
}


def _page(
    session: Session, user: ConsoleUser, cab: str, now: datetime
) -> console_views.CabinetPage:
    auth.check(user, Action.READ_CABINET, Resource(ResourceKind.SYSTEM))
    page = console_views.cabinet_page(session=session, principal=user.principal, cab=cab, now=now)
    if page is None:  # missing or another site's: the same page
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
    return page


@router.get("/console/cabinets/{cab}")
def cabinet_page(
    request: Request,
    cab: str,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    done: str = "",
) -> Response:
    page = _page(session, user, cab, now)
    return render(request, "cabinet.html", user=user, page=page, now=now, done=done)


@router.get("/console/cabinets/{cab}/live")
async def cabinet_live(
    request: Request, cab: str, session: SessionDep, now: NowDep, user: auth.ConsoleUserDep
) -> Response:
    await anyio.to_thread.run_sync(lambda: _page(session, user, cab, now))
    engine: Engine = request.app.state.engine
    clock: Callable[[], datetime] = request.app.state.clock
    t = translator(request)
    token = request.cookies.get(auth.COOKIE)

    def snapshot() -> tuple[object, str, str] | None:
        with Session(engine, expire_on_commit=False) as s:
            at = clock()
            fingerprint = console_views.cabinet_fingerprint(session=s, cab=cab)
            page = console_views.cabinet_page(session=s, principal=user.principal, cab=cab, now=at)
            if page is None:
                return None
            context = {"page": page, "t": t, "now": at, "lang": t.lang}
            grid = templates.get_template("_doors.html").render(context)
            head = templates.get_template("_cabinet_head.html").render(context)
            return fingerprint, grid, head

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


async def grid_updates(
    snapshot: Callable[[], tuple[object, str, str] | None],
    still_signed_in: Callable[[], bool],
    *,
    is_disconnected: Callable[[], object],
    sleep: Callable[[float], object],
    poll_s: float = POLL_S,
) -> AsyncIterator[dict[str, str]]:
    """Yield a `grid` (and `head`) event each time the snapshot's fingerprint changes.

    The first snapshot is the page as it was just rendered: nothing is sent for it. Stops when
    the client goes, the cabinet goes, or the session ends (then `signed-out`).
    """
    first = await anyio.to_thread.run_sync(snapshot)
    if first is None:
        return
    seen = first[0]
    waited = 0.0
    while not await is_disconnected():  # type: ignore[misc]
        await sleep(poll_s)  # type: ignore[misc]
        waited += poll_s
        if waited >= RECHECK_SESSION_S:
            waited = 0.0
            if not await anyio.to_thread.run_sync(still_signed_in):
                yield {"event": "signed-out", "data": ""}
                return
        now = await anyio.to_thread.run_sync(snapshot)
        if now is None:
            return
        if now[0] != seen:
            seen = now[0]
            yield {"event": "grid", "data": now[1]}
            yield {"event": "head", "data": now[2]}


def _door_view(page: console_views.CabinetPage, door: str, user: ConsoleUser):
    found = next((d for d in page.doors if d.id == door), None)
    if found is None:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
    return found


def _act_or_404(act: str, user: ConsoleUser) -> str:
    if act not in ACTS:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
    return act


@router.get("/console/cabinets/{cab}/doors/{door}/{act}")
def confirm_act(
    request: Request,
    cab: str,
    door: str,
    act: str,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
) -> Response:
    act = _act_or_404(act, user)
    page = _page(session, user, cab, now)
    auth.check(user, ACT_ACTIONS[act], console_views.page_resource(page))
    view = _door_view(page, door, user)
    t = translator(request)
    title = t("act.open_confirm", door=door) if act == "open" else t(ACT_TITLES[act])
    return render(
        request, "confirm.html", user=user, page=page, door=view, act=act, title=title,
        reason="", error="",
    )  # fmt: skip


@router.post("/console/cabinets/{cab}/doors/{door}/{act}")
def do_act(
    request: Request,
    cab: str,
    door: str,
    act: str,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    _csrf: auth.CsrfFormDep,
    reason: Annotated[str, Form(max_length=2000)] = "",
    hours: Annotated[int, Form(ge=0, le=100000)] = 0,
) -> Response:
    act = _act_or_404(act, user)
    page = _page(session, user, cab, now)
    auth.check(user, ACT_ACTIONS[act], console_views.page_resource(page))
    view = _door_view(page, door, user)
    t = translator(request)
    who = {"session": session, "principal": user.principal, "username": user.username, "now": now}
    try:
        if act == "open":
            console_acts.open_door(**who, cab=cab, door=door, reason=reason)
            done = t("act.done.open", door=door)
        elif act in ("service-out", "service-in"):
            console_acts.set_service(
                **who, cab=cab, door=door, in_service=act == "service-in", reason=reason
            )
            done = t("act.done.service", door=door)
        else:
            if view.parcel is None:
                raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
            row_id, key = view.parcel.row_id, view.parcel.tracking_no
            seal = {"seal_key": settings.secret_key_bytes}
            if act == "extend":
                result = console_acts.extend_deadline(
                    **who, **seal, row_id=row_id, hours=hours, reason=reason
                )
                when = local_time(result.deadline, page.timezone)
                done = t("act.done.extend", tracking=key, deadline=when)
            elif act == "cancel":
                console_acts.cancel_parcel(**who, **seal, row_id=row_id, reason=reason)
                done = t("act.done.cancel", tracking=key)
            else:
                console_acts.mark_for_return(**who, **seal, row_id=row_id, reason=reason)
                done = t("act.done.return", tracking=key)
    except errors.NotFound:
        raise auth.ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user) from None
    except (errors.InvalidInput, errors.Conflict) as exc:
        title = t("act.open_confirm", door=door) if act == "open" else t(ACT_TITLES[act])
        return render(
            request, "confirm.html", user=user, page=page, door=view, act=act, title=title,
            reason=reason, error=t("act.refused", why=str(exc)),
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        )  # fmt: skip
    target = f"/console/cabinets/{cab}?" + urlencode({"done": done})
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
