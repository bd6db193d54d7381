"""What the console's pages show, built from the database for one signed-in principal.

`fleet` answers "which cabinets are full or offline right now?": one row per cabinet in the
principal's scope. `cabinet_page` is one cabinet's doors with the parcel behind each. Both are
scoped by the policy (cloud.core.access); `cabinet_page` answers None for a cabinet that is
missing or out of scope alike.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session

from cloud.core import doors as door_rules
from cloud.core.access import Action as A
from cloud.core.access import Principal, Resource, ResourceKind, cabinet_scope, decide
from cloud.db import console_reads
from cloud.db.health import door_health
from cloud.db.models import Cabinet, Site
from cloud.db.parcels import parcel_to_core
from protocol.phones import mask_phone

SIZES = ("S", "M", "L", "XL")


@dataclass(frozen=True)
class SizeUse:
    size: str
    used: int  # occupied (a parcel behind it)
    total: int  # usable doors (in service, not faulted) plus the occupied


@dataclass(frozen=True)
class FleetRow:
    id: str
    name: str
    site_id: str
    site_name: str
    timezone: str
    online: bool | None
    presence_since: datetime | None
    last_seen_at: datetime | None
    firmware: str | None
    occupancy: list[SizeUse]
    used: int
    total: int
    faulted: int
    out_of_service: int
    open_alarms: int
    overdue: int

    @property
    def fill(self) -> float:
        return self.used / self.total if self.total else 0.0


@dataclass(frozen=True)
class Fleet:
    """One page of the sorted fleet, and the figures of the whole of it."""

    rows: list[FleetRow]  # this page's
    sites: list[Site]
    total: int
    page: int
    pages: int
    online: int
    offline: int
    never_seen: int
    open_alarms: int
    overdue: int
    faulted: int


# A page of a big fleet: every cabinet is counted and sorted, a page of them is drawn (drawing
# a thousand rows costs more than counting them).
PER_PAGE = 100


SORT_KEYS = {
    "id": lambda r: r.id,
    "site": lambda r: (r.site_name, r.id),
    "status": lambda r: ({False: 0, None: 1, True: 2}[r.online], r.id),
    "last_seen": lambda r: (r.last_seen_at is not None, r.last_seen_at or datetime.min, r.id),
    "fill": lambda r: (-r.fill, r.id),
    "faulted": lambda r: (-(r.faulted + r.out_of_service), r.id),
    "alarms": lambda r: (-r.open_alarms, r.id),
    "overdue": lambda r: (-r.overdue, r.id),
}

# The keys that are the cabinets' own columns (FleetCabinet has them as FleetRow does).
CABINET_SORTS = frozenset({"id", "site", "status", "last_seen"})


def fleet(
    *,
    session: Session,
    principal: Principal,
    now: datetime,
    site_id: str | None = None,
    sort: str = "status",
    page: int = 1,
    per_page: int = PER_PAGE,
) -> Fleet:
    """Return page `page` of the cabinets in the principal's scope (of `site_id`, if given),
    sorted by `sort`, with the figures of them all."""
    scope = cabinet_scope(principal)
    key = SORT_KEYS.get(sort, SORT_KEYS["status"])
    cabinets = console_reads.fleet_cabinets(session=session, scope=scope, site_id=site_id)
    pages = max(1, -(-len(cabinets) // per_page))
    page = min(max(1, page), pages)
    shown = slice((page - 1) * per_page, page * per_page)
    if sort in CABINET_SORTS:
        # Sorted by the cabinets' own columns: only the page's cabinets need their doors
        # counted; the fleet's totals are three indexed counts (docs/console.md#figures).
        cabinets.sort(key=key)
        on_page = cabinets[shown]
        counts = console_reads.fleet_counts(
            session=session, scope=scope, site_id=site_id, now=now,
            cabinet_ids=[c.id for c in on_page],
        )  # fmt: skip
        totals = console_reads.fleet_totals(session=session, scope=scope, site_id=site_id, now=now)
        rows = [_row(cabinet, counts) for cabinet in on_page]
    else:
        # Sorted by a count: every cabinet's counts decide the order.
        counts = console_reads.fleet_counts(session=session, scope=scope, site_id=site_id, now=now)
        every = sorted((_row(cabinet, counts) for cabinet in cabinets), key=key)
        rows = every[shown]
        totals = console_reads.FleetTotals(
            open_alarms=sum(r.open_alarms for r in every),
            overdue=sum(r.overdue for r in every),
            faulted=sum(r.faulted for r in every),
        )
    sites = console_reads.fleet_sites(session=session, scope=scope)
    for site in sites:
        session.expunge(site)  # kept for the page: a rollback would expire it
    session.rollback()
    return Fleet(
        rows=rows,
        sites=sites,
        total=len(cabinets),
        page=page,
        pages=pages,
        online=sum(1 for c in cabinets if c.online is True),
        offline=sum(1 for c in cabinets if c.online is False),
        never_seen=sum(1 for c in cabinets if c.online is None),
        open_alarms=totals.open_alarms,
        overdue=totals.overdue,
        faulted=totals.faulted,
    )


def _row(cabinet: console_reads.FleetCabinet, counts: console_reads.FleetCounts) -> FleetRow:
    used: Counter[str] = Counter()
    total: Counter[str] = Counter()
    faulted = out = 0
    for size, doors, occupied, n_faulted, n_unused in counts.doors.get(cabinet.id, ()):
        # A faulted or out-of-service door is no room (one both faulted and out counts once,
        # as faulted); an occupied one is used room.
        unusable = n_faulted + n_unused
        used[size] += occupied
        total[size] += doors - unusable
        faulted += n_faulted
        out += n_unused
    sizes = [s for s in SIZES if total[s] or used[s]] + sorted(s for s in total if s not in SIZES)
    return FleetRow(
        id=cabinet.id,
        name=cabinet.name,
        site_id=cabinet.site_id,
        site_name=cabinet.site_name,
        timezone=cabinet.timezone,
        online=cabinet.online,
        presence_since=cabinet.presence_since,
        last_seen_at=cabinet.last_seen_at,
        firmware=cabinet.firmware,
        occupancy=[SizeUse(s, used[s], total[s]) for s in sizes],
        used=sum(used.values()),
        total=sum(total.values()),
        faulted=faulted,
        out_of_service=out,
        open_alarms=counts.open_alarms.get(cabinet.id, 0),
        overdue=counts.overdue.get(cabinet.id, 0),
    )


# --- one cabinet --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DoorParcel:
    row_id: str
    tracking_no: str
    phone_masked: str
    status: str
    deposited_at: datetime | None
    deadline: datetime | None
    overdue: bool


@dataclass(frozen=True)
class DoorWear:
    """What the cabinet last reported of the door's wear (`cloud.db.health_models.DoorHealth`)."""

    pulses: int  # lock cycles
    failed_unlocks: int
    bus_errors: int  # its board's
    open_ms_recent: int | None


@dataclass(frozen=True)
class DoorView:
    id: str
    size: str
    state: str  # free | occupied | faulted | out_of_service
    in_service: bool
    low_door: bool
    parcel: DoorParcel | None
    wear: DoorWear | None = None


@dataclass(frozen=True)
class CabinetPage:
    id: str
    name: str
    address: str
    site_id: str
    site_name: str
    timezone: str
    online: bool | None
    presence_since: datetime | None
    last_seen_at: datetime | None
    firmware: str | None
    open_alarms: int
    doors: list[DoorView] = field(default_factory=list)
    # What the principal may do here (buttons it is not shown it could not use anyway).
    may_open: bool = False
    may_service: bool = False
    may_extend: bool = False
    may_cancel: bool = False


def cabinet_resource(cabinet: Cabinet) -> Resource:
    return Resource(ResourceKind.CABINET, cabinet.id, site_id=cabinet.site_id)


def cabinet_page(
    *, session: Session, principal: Principal, cab: str, now: datetime
) -> CabinetPage | None:
    """Return the cabinet's page, or None if it is missing or out of the principal's scope."""
    found = console_reads.cabinet_with_site(session=session, cab=cab)
    if found is None:
        session.rollback()
        return None
    cabinet, site = found
    resource = cabinet_resource(cabinet)
    if not decide(principal, A.READ_CABINET, resource).allowed:
        session.rollback()
        return None
    compartments = console_reads.cabinet_doors(session=session, cab=cab)
    parcels = console_reads.parcels_behind_doors(session=session, cab=cab)
    alarms = console_reads.open_alarm_count(session=session, cab=cab)
    health = door_health(session=session, cabinet_id=cab)
    by_door = {p.compartment: p for p in parcels}
    door_views = []
    for c in compartments:
        row = by_door.get(c.id)
        parcel = None
        if row is not None:
            deadline = parcel_to_core(row).deadline(now)
            parcel = DoorParcel(
                row_id=row.id,
                tracking_no=row.tracking_no,
                phone_masked=mask_phone(row.phone),
                status=row.status,
                deposited_at=row.clock_started_at or row.deposited_at,
                deadline=deadline,
                overdue=row.status == "expired" or (deadline is not None and deadline <= now),
            )
        state = c.state if c.in_service or c.state == door_rules.FAULTED else "out_of_service"
        h = health.get(c.id)
        wear = (
            None
            if h is None
            else DoorWear(h.pulses, h.failed_unlocks, h.bus_errors, h.open_ms_recent)
        )
        door_views.append(DoorView(c.id, c.size, state, c.in_service, c.low_door, parcel, wear))
    door_views.sort(key=lambda d: (len(d.id), d.id))  # "2" before "10"

    def may(action: A) -> bool:
        return decide(principal, action, resource).allowed

    page = CabinetPage(
        id=cabinet.id,
        name=cabinet.name,
        address=cabinet.address,
        site_id=site.id,
        site_name=site.name,
        timezone=site.timezone,
        online=cabinet.online,
        presence_since=cabinet.presence_since,
        last_seen_at=cabinet.last_seen_at,
        firmware=cabinet.firmware,
        open_alarms=alarms,
        doors=door_views,
        may_open=may(A.OPEN_DOOR_REMOTELY),
        may_service=may(A.SET_OUT_OF_SERVICE),
        may_extend=may(A.EXTEND_DEADLINE),
        may_cancel=may(A.CANCEL_PARCEL),
    )
    session.rollback()  # after reading the rows' columns: a rollback expires them
    return page


def cabinet_fingerprint(*, session: Session, cab: str) -> tuple[object, ...]:
    """What changes when the cabinet's door grid must be redrawn (the live page polls it)."""
    found = console_reads.cabinet_fingerprint(session=session, cab=cab)
    session.rollback()
    return found


def page_resource(page: CabinetPage) -> Resource:
    """The policy's view of the cabinet a page shows (for the acts' `decide`)."""
    return Resource(ResourceKind.CABINET, page.id, site_id=page.site_id)


# --- a carrier's couriers -----------------------------------------------------------------------


@dataclass(frozen=True)
class CourierRow:
    id: str
    name: str
    phone_masked: str
    in_locker: int
    expired: int


def carrier_couriers(*, session: Session, principal: Principal) -> list[CourierRow]:
    """Return the couriers of the principal's carrier (none for a principal with no carrier)."""
    if principal.carrier_id is None:
        return []
    found = console_reads.carrier_couriers(session=session, carrier_id=principal.carrier_id)
    rows = [
        CourierRow(c.id, c.name, mask_phone(c.phone) if c.phone else "—", n_in, n_expired)
        for c, n_in, n_expired in found
    ]
    session.rollback()
    return rows
