"""The console's parcels: search, one parcel's timeline, the aged-parcel report.

Every answer is within the caller's scope (`cloud.core.access`): a list is narrowed by the
policy's WHERE clause, one parcel is decided by `decide` (out of scope is a 404 like a missing
one). Phones are masked in everything this returns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from cloud.core.access import SYSTEM, Action, Principal, decide, parcel_scope
from cloud.core.parcels import Status
from cloud.core.phones import mask_phone
from cloud.db import parcel_search, reads
from cloud.db.cabinets import get_cabinet
from cloud.db.models import Parcel, Site
from cloud.db.parcel_search import courier_carrier
from cloud.db.parcels import parcel_to_core
from cloud.db.scoping import parcel_resource
from cloud.errors import Forbidden, InvalidInput, NotFound

MAX_RESULTS = 200
_LAST4 = re.compile(r"^\d{4}$")
_TEXT = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")


@dataclass(frozen=True)
class ParcelHit:
    """A parcel as a console list shows it: the phone masked, its age and deadline at `now`."""

    id: str
    tracking_no: str
    order_no: str | None
    status: str
    site_id: str
    timezone: str  # the site's: times are shown as the site lives them
    cabinet_id: str
    cabinet_name: str
    compartment: str | None
    size: str | None
    phone_masked: str
    carrier: str | None
    deposited_at: datetime | None
    left_locker_at: datetime | None
    deadline: datetime | None
    age_s: int | None  # since deposit, until it left the locker (or now)
    overdue: bool

    @property
    def age(self) -> timedelta | None:
        return timedelta(seconds=self.age_s) if self.age_s is not None else None


@dataclass(frozen=True)
class TimelineStep:
    at: datetime
    status: str
    source: str
    note: str


def _hit(
    row: Parcel, cabinet_name: str, site_id: str, zone: str, now: datetime, carrier: str | None
) -> ParcelHit:
    deadline = parcel_to_core(row).deadline(now)
    age_s = None
    if row.deposited_at is not None:
        age_s = int(((row.left_locker_at or now) - row.deposited_at).total_seconds())
    live = row.status in (Status.IN_LOCKER, Status.EXPIRED)
    return ParcelHit(
        id=row.id,
        tracking_no=row.tracking_no,
        order_no=row.order_no,
        status=row.status,
        site_id=site_id,
        timezone=zone,
        cabinet_id=row.cabinet_id,
        cabinet_name=cabinet_name,
        compartment=row.compartment,
        size=row.size,
        phone_masked=mask_phone(row.phone),
        carrier=carrier,
        deposited_at=row.deposited_at,
        left_locker_at=row.left_locker_at,
        deadline=deadline,
        age_s=age_s,
        overdue=live and deadline is not None and deadline <= now,
    )


def _allowed(principal: Principal) -> None:
    decision = decide(principal, Action.READ_PARCEL, SYSTEM)
    if not decision.allowed:
        raise Forbidden(decision.reason)


def search(
    *,
    session: Session,
    principal: Principal,
    now: datetime,
    query: str = "",
    statuses: Sequence[str] = (),
    min_age_days: float | None = None,
    site_id: str | None = None,
    cabinet_id: str | None = None,
    limit: int = 100,
) -> list[ParcelHit]:
    """Find parcels by tracking no or order no (from the start), or a phone's last 4 digits.

    Four digits search both: the phone's end and numbers starting with them. InvalidInput for
    a query that is none of these or an unknown state.
    """
    _allowed(principal)
    query = query.strip()
    if query and not _TEXT.match(query):
        raise InvalidInput(
            "search by a tracking number, an order number or a phone's last 4 digits"
        )
    known = {s.value for s in Status}
    unknown = [s for s in statuses if s not in known]
    if unknown:
        raise InvalidInput(f"unknown state {unknown[0]!r}; one of {', '.join(sorted(known))}")
    if min_age_days is not None and not 0 <= min_age_days <= 3650:
        raise InvalidInput("the age is 0 to 3650 days")
    rows = parcel_search.search(
        session=session,
        scope=parcel_scope(principal),
        text=query,
        phone_last4=query if _LAST4.match(query) else None,
        statuses=statuses,
        deposited_before=now - timedelta(days=min_age_days) if min_age_days else None,
        site_id=site_id or None,
        cabinet_id=cabinet_id or None,
        limit=max(1, min(limit, MAX_RESULTS)),
    )
    return [_hit(row, name, site, zone, now, carrier) for row, name, site, zone, carrier in rows]


def aged(
    *,
    session: Session,
    principal: Principal,
    now: datetime,
    min_age_days: float = 3,
    site_id: str | None = None,
) -> list[ParcelHit]:
    """The aged-parcel report: parcels still behind a door `min_age_days` or more, oldest first."""
    _allowed(principal)
    rows = parcel_search.aged(
        session=session,
        scope=parcel_scope(principal),
        deposited_before=now - timedelta(days=min_age_days),
        site_id=site_id or None,
    )
    return [_hit(row, name, site, zone, now, carrier) for row, name, site, zone, carrier in rows]


def timeline(
    *, session: Session, principal: Principal, parcel_row_id: str, now: datetime
) -> tuple[ParcelHit, list[TimelineStep]]:
    """Return one parcel and every change of it, oldest first; NotFound outside the scope."""
    row = session.get(Parcel, parcel_row_id)
    decision = decide(principal, Action.READ_PARCEL, parcel_resource(session, row))
    if not decision.allowed:
        if decision.http_status == 403:
            raise Forbidden(decision.reason)
        raise NotFound("no such parcel")
    assert row is not None
    cabinet = get_cabinet(session=session, cab=row.cabinet_id)
    site = session.get(Site, cabinet.site_id) if cabinet else None
    name, site_id = (cabinet.name, cabinet.site_id) if cabinet else (row.cabinet_id, "")
    carrier = courier_carrier(session=session, courier_id=row.courier_id)
    carrier = carrier or row.owner_carrier_id or row.courier_company
    hit = _hit(row, name, site_id, site.timezone if site else "UTC", now, carrier)
    steps = [
        TimelineStep(at=e.at, status=e.status, source=e.source, note=e.note)
        for e in reads.timeline(session=session, parcel_row_id=row.id)
    ]
    return hit, steps
