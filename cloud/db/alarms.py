"""The alarms' SQL: raise (or repeat) the one open alarm of a cabinet, door and kind; list them
within a scope; find cabinets offline too long and a cabinet's recent keypad lockouts.

Rules live in `cloud.core.alarms`; the transaction is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from cloud.core.access import CabinetScope
from cloud.core.alarms import open_key, severity
from cloud.db.models import (
    Account,
    AccountSite,
    Alarm,
    Cabinet,
    InboxEvent,
    Parcel,
    Site,
)
from cloud.db.rows import insert_ignore
from cloud.db.scoping import cabinet_where


@dataclass(frozen=True)
class Raised:
    """What raising an alarm did: `new` is False when it repeated an open one."""

    alarm_id: int
    new: bool
    count: int


def raise_alarm(
    *,
    session: Session,
    cabinet_id: str,
    compartment: str | None,
    kind: str,
    detail: str,
    at: datetime,
    seq: int | None = None,
) -> Raised:
    """Add an open alarm, or count a repeat of the open one of the same cabinet, door and kind.

    Safe against a concurrent raise of the same alarm: the unique `open_key` lets one insert
    win, and the other counts a repeat.
    """
    key = open_key(cabinet_id, compartment, kind)
    inserted = insert_ignore(
        session=session,
        table=Alarm.__table__,
        rows=[
            {
                "cabinet_id": cabinet_id,
                "compartment": compartment,
                "kind": kind,
                "severity": str(severity(kind)),
                "detail": detail[:500],
                "at": at,
                "last_seen_at": at,
                "count": 1,
                "seq": seq,
                "open_key": key,
                "ack_note": "",
                "resolve_note": "",
            }
        ],
        conflict_columns=["open_key"],
        returning=["id"],
    )
    if inserted:
        return Raised(alarm_id=inserted[0][0], new=True, count=1)
    row = session.exec(select(Alarm).where(Alarm.open_key == key).with_for_update()).one()
    row.count += 1
    # Events of one cabinet come in seq order but a resend may carry an older time.
    if row.last_seen_at is None or at > row.last_seen_at:
        row.last_seen_at = at
    if detail:
        row.detail = detail[:500]
    session.add(row)
    session.flush()
    assert row.id is not None
    return Raised(alarm_id=row.id, new=False, count=row.count)


def lock_alarm(*, session: Session, alarm_id: int) -> Alarm | None:
    """Return an alarm row locked for this transaction."""
    return session.exec(select(Alarm).where(Alarm.id == alarm_id).with_for_update()).first()


def close_open(
    *, session: Session, cabinet_id: str, kind: str, now: datetime, by: str, note: str
) -> int:
    """Resolve the open alarms of `kind` at a cabinet (whatever the door); return how many."""
    result = session.exec(  # type: ignore[call-overload]
        update(Alarm)
        .where(
            Alarm.cabinet_id == cabinet_id,
            Alarm.kind == kind,
            col(Alarm.cleared_at).is_(None),
        )
        .values(cleared_at=now, open_key=None, resolved_by=by, resolve_note=note)
    )
    return result.rowcount or 0


def recent_lockouts(*, session: Session, cabinet_id: str, since: datetime) -> list[datetime]:
    """Return when the cabinet's `keypad.lockout` events (by its clock) happened after `since`."""
    statement = select(InboxEvent.ts).where(
        InboxEvent.cabinet_id == cabinet_id,
        InboxEvent.type == "keypad.lockout",
        col(InboxEvent.ts) > since,
    )
    return list(session.exec(statement))


@dataclass(frozen=True)
class OfflineCabinet:
    id: str
    site_id: str
    last_seen_at: datetime
    offline_alarm_s: int


def offline_cabinets(*, session: Session) -> list[OfflineCabinet]:
    """Return the cabinets now offline, since when, with their site's threshold (the core
    decides). Since when is `presence_since` (when it went offline), else its last message."""
    since = func.coalesce(col(Cabinet.presence_since), col(Cabinet.last_seen_at))
    statement = (
        select(Cabinet.id, Cabinet.site_id, since, Site.offline_alarm_s)
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .where(Cabinet.online == False, since.is_not(None))  # noqa: E712
    )
    return [OfflineCabinet(*row) for row in session.exec(statement)]


def open_offline_cabinets(*, session: Session, cabinet_ids: list[str]) -> set[str]:
    """Return which of `cabinet_ids` have an open `cabinet.offline` alarm."""
    if not cabinet_ids:
        return set()
    statement = select(Alarm.cabinet_id).where(
        col(Alarm.cabinet_id).in_(cabinet_ids),
        Alarm.kind == "cabinet.offline",
        col(Alarm.cleared_at).is_(None),
    )
    return set(session.exec(statement))


def online_with_open_offline(*, session: Session) -> list[str]:
    """Return the cabinets back online whose `cabinet.offline` alarm is still open."""
    statement = (
        select(Alarm.cabinet_id)
        .join(Cabinet, col(Cabinet.id) == col(Alarm.cabinet_id))
        .where(
            Alarm.kind == "cabinet.offline",
            col(Alarm.cleared_at).is_(None),
            Cabinet.online == True,  # noqa: E712
        )
    )
    return sorted(set(session.exec(statement)))


def site_managers_with_phones(*, session: Session, site_id: str) -> list[tuple[str, str]]:
    """Return (account id, phone) of the site's enabled managers who gave a phone."""
    statement = (
        select(Account.id, Account.phone)
        .join(AccountSite, col(AccountSite.account_id) == col(Account.id))
        .where(
            AccountSite.site_id == site_id,
            Account.role == "site_manager",
            Account.disabled == False,  # noqa: E712
            col(Account.phone).is_not(None),
        )
        .order_by(col(Account.id))
    )
    return [(account_id, phone) for account_id, phone in session.exec(statement)]


def parcel_cabinet(*, session: Session, parcel_row_id: str | None) -> str | None:
    """Return the cabinet a parcel is at (None if gone)."""
    if parcel_row_id is None:
        return None
    return session.exec(select(Parcel.cabinet_id).where(Parcel.id == parcel_row_id)).first()


# --- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlarmRow:
    """An alarm as a list shows it, with its cabinet's name and site."""

    alarm: Alarm
    cabinet_name: str
    site_id: str
    timezone: str  # the site's, for showing times as the site lives them


def list_alarms(
    *,
    session: Session,
    scope: CabinetScope,
    open_only: bool = True,
    site_id: str | None = None,
    cabinet_id: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[AlarmRow]:
    """Return the alarms at the cabinets `scope` admits: critical first, then the latest."""
    statement: Any = (
        select(Alarm, Cabinet.name, Cabinet.site_id, Site.timezone)
        .join(Cabinet, col(Cabinet.id) == col(Alarm.cabinet_id))
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .where(cabinet_where(scope))
    )
    if open_only:
        statement = statement.where(col(Alarm.cleared_at).is_(None))
    if site_id:
        statement = statement.where(Cabinet.site_id == site_id)
    if cabinet_id:
        statement = statement.where(Alarm.cabinet_id == cabinet_id)
    if kind:
        statement = statement.where(Alarm.kind == kind)
    statement = statement.order_by(
        (col(Alarm.severity) == "critical").desc(),
        func.coalesce(col(Alarm.last_seen_at), col(Alarm.at)).desc(),
        col(Alarm.id).desc(),
    ).limit(limit)
    return [AlarmRow(*row) for row in session.exec(statement)]


def open_counts(*, session: Session, scope: CabinetScope) -> dict[str, int]:
    """Return the number of open alarms per cabinet the scope admits."""
    statement = (
        select(Alarm.cabinet_id, func.count())
        .join(Cabinet, col(Cabinet.id) == col(Alarm.cabinet_id))
        .where(cabinet_where(scope), col(Alarm.cleared_at).is_(None))
        .group_by(col(Alarm.cabinet_id))
    )
    return {cabinet_id: n for cabinet_id, n in session.exec(statement)}
