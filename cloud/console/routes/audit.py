"""`/console/audit`: the audit log, filterable by action, text and dates, and as CSV."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from cloud.api.deps import NowDep, SessionDep
from cloud.console import auth
from cloud.console.web import render
from cloud.core.access import SYSTEM, Action
from cloud.services import console_audit

router = APIRouter(include_in_schema=False)

# The dates a person types are days of the operator's zone (the deployment's: China Standard).
ZONE = ZoneInfo("Asia/Shanghai")


def _day(text: str) -> datetime | None:
    try:
        return datetime.combine(date.fromisoformat(text), time(0), tzinfo=ZONE)
    except ValueError:
        return None


def _filter(action: str, q: str, since: str, until: str, before: int | None):
    end = _day(until)
    return console_audit.AuditFilter(
        action=action or None,
        text=q.strip()[:100] or None,
        since=_day(since),
        until=end + timedelta(days=1) if end else None,  # "to" includes its day
        before_id=before,
    )


@router.get("/console/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    user: auth.ConsoleUserDep,
    action: str = "",
    q: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
) -> Response:
    auth.check(user, Action.READ_AUDIT, SYSTEM)
    where = _filter(action, q, since, until, before)
    rows = console_audit.audit_rows(session=session, principal=user.principal, where=where)
    actions = console_audit.audit_actions(session=session)
    more = rows[-1].id if len(rows) == console_audit.PAGE_SIZE else None
    return render(
        request, "audit.html", user=user, rows=rows, actions=actions, action=action, q=q,
        since=since, until=until, more=more, zone="Asia/Shanghai", now=now,
    )  # fmt: skip


@router.get("/console/audit.csv")
def audit_csv(
    session: SessionDep,
    user: auth.ConsoleUserDep,
    now: NowDep,
    action: str = "",
    q: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    auth.check(user, Action.READ_AUDIT, SYSTEM)
    where = _filter(action, q, since, until, None)
    name = f"audit-{now.astimezone(ZONE):%Y%m%d-%H%M}.csv"
    return StreamingResponse(
        console_audit.audit_csv(session=session, principal=user.principal, where=where),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Cache-Control": "no-store"},
    )  # fmt: skip
