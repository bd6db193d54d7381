"""What the console's pages read: the fleet's aggregates, one cabinet's doors, the audit log.

Each page is a fixed, small number of queries whatever the fleet's size (the fleet: four
grouped reads over the cabinets in scope; a cabinet: three), every one narrowed by the policy's
scope (cloud.db.scoping), so a page never shows what `decide` would answer 404 for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from cloud.core.access import CabinetScope
from cloud.db.models import (
    Account,
    Alarm,
    AuditLog,
    Cabinet,
    Compartment,
    Courier,
    Parcel,
    Site,
)
from cloud.db.scoping import cabinet_where

# A parcel behind a door: deposited and not yet out (picked up, taken back).
IN_LOCKER = "in_locker"
EXPIRED = "expired"


@dataclass(frozen=True)
class FleetCounts:
    """The fleet page's aggregates, by cabinet id."""

    # cab -> [(size, doors, occupied, faulted, out of service)]
    doors: dict[str, list[tuple[str, int, int, int, int]]]
    open_alarms: dict[str, int]
    overdue: dict[str, int]


@dataclass(frozen=True)
class FleetCabinet:
    """The columns of a cabinet and its site the fleet shows (plain values, no ORM object:
    a thousand of them load in a few milliseconds)."""

    id: str
    name: str
    site_id: str
    site_name: str
    timezone: str
    online: bool | None
    presence_since: datetime | None
    last_seen_at: datetime | None
    firmware: str | None


def fleet_cabinets(
    *, session: Session, scope: CabinetScope, site_id: str | None = None
) -> list[FleetCabinet]:
    """Return the cabinets in `scope` (of one site, if given) with their site, by id."""
    statement = (
        select(
            Cabinet.id,
            Cabinet.name,
            Cabinet.site_id,
            Site.name,
            Site.timezone,
            Cabinet.online,
            Cabinet.presence_since,
            Cabinet.last_seen_at,
            Cabinet.firmware,
        )
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .where(cabinet_where(scope))
    )
    if site_id is not None:
        statement = statement.where(Cabinet.site_id == site_id)
    return [FleetCabinet(*row) for row in session.exec(statement.order_by(col(Cabinet.id)))]


def fleet_sites(*, session: Session, scope: CabinetScope) -> list[Site]:
    """Return the sites with a cabinet in `scope`, by name (the site filter's choices)."""
    in_scope = select(Cabinet.site_id).where(cabinet_where(scope))
    statement = select(Site).where(col(Site.id).in_(in_scope)).order_by(col(Site.name))
    return list(session.exec(statement))


def _in_scope(scope: CabinetScope, site_id: str | None, cabinet_ids: Sequence[str] | None):
    cabinets = select(Cabinet.id).where(cabinet_where(scope))
    if site_id is not None:
        cabinets = cabinets.where(Cabinet.site_id == site_id)
    if cabinet_ids is not None:
        cabinets = cabinets.where(col(Cabinet.id).in_(list(cabinet_ids)))
    return cabinets


def _overdue_where(now: datetime) -> list[Any]:
    # Read through ix_parcels_behind_doors: its WHERE is repeated here word for word, and the
    # deadline is in the index, so the count never visits the parcels themselves.
    return [
        col(Parcel.left_locker_at).is_(None),
        col(Parcel.status).in_([IN_LOCKER, EXPIRED]),
        (col(Parcel.status) == EXPIRED) | (col(Parcel.told_deadline) <= now),
    ]


@dataclass(frozen=True)
class FleetTotals:
    open_alarms: int
    overdue: int
    faulted: int


def fleet_totals(
    *, session: Session, scope: CabinetScope, site_id: str | None, now: datetime
) -> FleetTotals:
    """Return the open alarms, overdue parcels and faulted doors of every cabinet in scope:
    three counts through partial indexes, without reading every door of the fleet."""
    cabinets = _in_scope(scope, site_id, None)
    alarms = session.exec(
        select(func.count()).where(
            col(Alarm.cabinet_id).in_(cabinets), col(Alarm.cleared_at).is_(None)
        )
    ).one()
    overdue = session.exec(
        select(func.count()).where(col(Parcel.cabinet_id).in_(cabinets), *_overdue_where(now))
    ).one()
    # ix_compartments_faulted: its WHERE repeated word for word.
    faulted = session.exec(
        select(func.count()).where(
            col(Compartment.cabinet_id).in_(cabinets), col(Compartment.state) == "faulted"
        )
    ).one()
    return FleetTotals(int(alarms), int(overdue), int(faulted))


def fleet_counts(
    *,
    session: Session,
    scope: CabinetScope,
    site_id: str | None,
    now: datetime,
    cabinet_ids: Sequence[str] | None = None,
) -> FleetCounts:
    """Return the door, alarm and overdue-parcel counts of the cabinets in scope (of only
    `cabinet_ids`, if given: the page's)."""
    cabinets = _in_scope(scope, site_id, cabinet_ids)
    occupied = func.count().filter(col(Compartment.state) == "occupied")
    faulted = func.count().filter(col(Compartment.state) == "faulted")
    # Out of service: so marked, or a free door taken out of use (an occupied or faulted one
    # counts as occupied or faulted: each door once).
    unused = func.count().filter(
        (col(Compartment.state) == "out_of_service")
        | (~col(Compartment.in_service) & (col(Compartment.state) == "free"))
    )
    doors: dict[str, list[tuple[str, int, int, int, int]]] = {}
    # One row per (cabinet, size), not per door state: a few thousand groups for a fleet.
    door_rows = session.exec(
        select(Compartment.cabinet_id, Compartment.size, func.count(), occupied, faulted, unused)
        .where(col(Compartment.cabinet_id).in_(cabinets))
        .group_by(col(Compartment.cabinet_id), col(Compartment.size))
    )
    for cab, size, total, n_occupied, n_faulted, n_unused in door_rows:
        doors.setdefault(cab, []).append(
            (size, int(total), int(n_occupied), int(n_faulted), int(n_unused))
        )
    alarms = session.exec(
        select(Alarm.cabinet_id, func.count())
        .where(col(Alarm.cabinet_id).in_(cabinets), col(Alarm.cleared_at).is_(None))
        .group_by(col(Alarm.cabinet_id))
    )
    overdue = session.exec(
        select(Parcel.cabinet_id, func.count())
        .where(col(Parcel.cabinet_id).in_(cabinets), *_overdue_where(now))
        .group_by(col(Parcel.cabinet_id))
    )
    return FleetCounts(
        doors=doors,
        open_alarms={cab: int(n) for cab, n in alarms},
        overdue={cab: int(n) for cab, n in overdue},
    )


def cabinet_with_site(*, session: Session, cab: str) -> tuple[Cabinet, Site] | None:
    row = session.exec(
        select(Cabinet, Site)
        .join(Site, col(Site.id) == col(Cabinet.site_id))
        .where(Cabinet.id == cab)
    ).first()
    return (row[0], row[1]) if row is not None else None


def cabinet_doors(*, session: Session, cab: str) -> list[Compartment]:
    statement = select(Compartment).where(Compartment.cabinet_id == cab)
    return list(session.exec(statement.order_by(col(Compartment.id))))


def parcels_behind_doors(*, session: Session, cab: str) -> list[Parcel]:
    """Return the parcels still behind a door of `cab` (in the locker, or expired and not yet
    taken back), by compartment."""
    statement = select(Parcel).where(
        Parcel.cabinet_id == cab,
        col(Parcel.compartment).is_not(None),
        col(Parcel.left_locker_at).is_(None),
        col(Parcel.status).in_([IN_LOCKER, EXPIRED]),
    )
    return list(session.exec(statement))


def open_alarm_count(*, session: Session, cab: str) -> int:
    statement = select(func.count()).where(Alarm.cabinet_id == cab, col(Alarm.cleared_at).is_(None))
    return int(session.exec(statement).one())


def cabinet_fingerprint(*, session: Session, cab: str) -> tuple[Any, ...]:
    """What changes when the door grid must be redrawn: the cabinet's presence and applied seq,
    and every door's state. One read of the cabinet row and its compartments (by primary key)."""
    head = session.exec(
        select(Cabinet.applied_upto, Cabinet.online, Cabinet.last_seen_at).where(Cabinet.id == cab)
    ).first()
    doors = session.exec(
        select(Compartment.id, Compartment.state, Compartment.in_service)
        .where(Compartment.cabinet_id == cab)
        .order_by(col(Compartment.id))
    ).all()
    return (tuple(head) if head is not None else None, tuple(tuple(d) for d in doors))


# --- the audit log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filters: any of them None or empty means "any"."""

    action: str | None = None
    text: str | None = None  # contained in the resource id or the principal id
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None  # paging: entries older than this one


def audit_search(
    *,
    session: Session,
    site_ids: frozenset[str] | None,
    where: AuditFilter,
    limit: int | None,
) -> list[AuditLog]:
    """Return the audit rows matching `where`, newest first (up to `limit`, None for all).

    `site_ids` None: every row (an operator admin). Otherwise only the rows about a cabinet of
    those sites or a parcel at one (a site manager): nobody's sign-ins, no account changes.
    """
    statement = select(AuditLog)
    if site_ids is not None:
        cabinets = select(Cabinet.id).where(col(Cabinet.site_id).in_(sorted(site_ids)))
        parcels = select(Parcel.id).where(col(Parcel.cabinet_id).in_(cabinets))
        statement = statement.where(
            or_(
                (col(AuditLog.resource_kind) == "cabinet")
                & col(AuditLog.resource_id).in_(cabinets),
                (col(AuditLog.resource_kind) == "parcel") & col(AuditLog.resource_id).in_(parcels),
            )
        )
    if where.action:
        statement = statement.where(AuditLog.action == where.action)
    if where.text:
        pattern = "%" + where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern += "%"
        statement = statement.where(
            or_(
                col(AuditLog.resource_id).like(pattern, escape="\\"),
                col(AuditLog.principal_id).like(pattern, escape="\\"),
            )
        )
    if where.since is not None:
        statement = statement.where(col(AuditLog.at) >= where.since)
    if where.until is not None:
        statement = statement.where(col(AuditLog.at) < where.until)
    if where.before_id is not None:
        statement = statement.where(col(AuditLog.id) < where.before_id)
    statement = statement.order_by(col(AuditLog.id).desc())
    if limit is not None:
        statement = statement.limit(limit)
    return list(session.exec(statement))


def audit_actions(*, session: Session) -> list[str]:
    """Return the distinct actions in the audit log (the filter's choices)."""
    statement = select(AuditLog.action).distinct().order_by(col(AuditLog.action))
    return list(session.exec(statement))


def names_of_accounts(*, session: Session, ids: Sequence[str]) -> dict[str, str]:
    """Return account id -> username for the ids given (the audit page shows names)."""
    if not ids:
        return {}
    statement = select(Account.id, Account.username).where(col(Account.id).in_(sorted(set(ids))))
    return dict(session.exec(statement).all())


# --- a carrier's couriers -----------------------------------------------------------------------


def carrier_couriers(*, session: Session, carrier_id: str) -> list[tuple[Courier, int, int]]:
    """Return the carrier's couriers with how many of their parcels are in a locker now and
    how many are past their deadline there, by courier id."""
    couriers = list(
        session.exec(select(Courier).where(Courier.carrier == carrier_id).order_by(col(Courier.id)))
    )
    counts = session.exec(
        select(Parcel.courier_id, Parcel.status, func.count())
        .where(
            col(Parcel.courier_id).in_(select(Courier.id).where(Courier.carrier == carrier_id)),
            col(Parcel.status).in_([IN_LOCKER, EXPIRED]),
            col(Parcel.left_locker_at).is_(None),
        )
        .group_by(col(Parcel.courier_id), col(Parcel.status))
    )
    by: dict[tuple[str, str], int] = {(c, s): int(n) for c, s, n in counts}
    return [(c, by.get((c.id, IN_LOCKER), 0), by.get((c.id, EXPIRED), 0)) for c in couriers]
