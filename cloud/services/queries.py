"""Read services for the API: cabinets with occupancy, parcels, tracking timelines, API keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlmodel import Session

from cloud.core.access import CabinetScope, ParcelScope, Resource
from cloud.core.expiry import OverdueFee, overdue_fee
from cloud.core.parcels import ErpOrderState, Status, erp_state, order_state
from cloud.core.phones import mask_phone
from cloud.db import reads, scoping
from cloud.db.cabinets import get_cabinet as cabinet_by_id
from cloud.db.cabinets import site_policy
from cloud.db.models import Cabinet, Compartment, ErpApiKey, Parcel, Site
from cloud.db.parcels import get_parcel_by_parcel_id, parcel_deadline, parcel_to_core

MAX_PAGE = 500
# A page deeper than this is refused (422), not sent to SQL: 2**63 overflows the driver's BIGINT
# (a 500), and a deep OFFSET scans every row it skips. Filter by cabinet or status to go further.
MAX_OFFSET = 1_000_000


def database_ok(*, session: Session) -> bool:
    """Return whether the database answers a trivial query."""
    return reads.database_ok(session=session)


# --- API keys -------------------------------------------------------------------------------------


def hash_api_key(key: str) -> str:
    """Return the stored form of an API key: hex SHA-256 (keys are long random tokens, so a
    fast unsalted hash is enough and lets a request find its key by an indexed lookup)."""
    return hashlib.sha256(key.encode()).hexdigest()


def find_api_key(*, session: Session, key: str) -> ErpApiKey | None:
    """Return the live (unrevoked) API key row `key` belongs to, if any."""
    row = reads.api_key_by_hash(session=session, key_hash=hash_api_key(key))
    return row if row is not None and row.revoked_at is None else None


def live_key_binding(*, session: Session, key: str) -> tuple[ErpApiKey, frozenset[str]] | None:
    """Return the live API key row `key` belongs to and the sites it is bound to, if any."""
    row = find_api_key(session=session, key=key)
    if row is None:
        return None
    return row, reads.key_site_ids(session=session, key_id=row.id)


# The row type of a live ERP key, as the API's key dependency hands it on.
ErpKey = ErpApiKey


# --- cabinets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Occupancy:
    """How many compartments of one size a cabinet has, and in which state."""

    size: str
    total: int = 0
    free: int = 0
    occupied: int = 0
    out_of_service: int = 0


@dataclass(frozen=True)
class CabinetView:
    """A cabinet row with its occupancy by size (sizes sorted)."""

    cabinet: Cabinet
    occupancy: list[Occupancy] = field(default_factory=list)


def _occupancy(compartments: Sequence[Compartment]) -> list[Occupancy]:
    counts: dict[str, dict[str, int]] = {}
    for compartment in compartments:
        empty = {"total": 0, "free": 0, "occupied": 0, "oos": 0}
        count = counts.setdefault(compartment.size, empty)
        count["total"] += 1
        if not compartment.in_service:
            # Out of service trumps its state: a free door nobody may use is not capacity.
            count["oos"] += 1
        elif compartment.state == "free":
            count["free"] += 1
        else:
            count["occupied"] += 1
    return [
        Occupancy(size, c["total"], c["free"], c["occupied"], c["oos"])
        for size, c in sorted(counts.items())
    ]


def list_cabinets(*, session: Session, scope: CabinetScope) -> list[CabinetView]:
    """Return the cabinets `scope` admits with their occupancy, by id."""
    cabinets = reads.cabinets_in_scope(session=session, scope=scope)
    by_cabinet: dict[str, list[Compartment]] = {}
    for compartment in reads.compartments_in_scope(session=session, scope=scope):
        by_cabinet.setdefault(compartment.cabinet_id, []).append(compartment)
    return [CabinetView(c, _occupancy(by_cabinet.get(c.id, []))) for c in cabinets]


def get_site(*, session: Session, site_id: str) -> Site | None:
    """Return a site with its policy columns."""
    return session.get(Site, site_id)


def get_cabinet(*, session: Session, cab: str) -> CabinetView | None:
    """Return one cabinet with its occupancy."""
    cabinet = cabinet_by_id(session=session, cab=cab)
    if cabinet is None:
        return None
    return CabinetView(cabinet, _occupancy(list_compartments(session=session, cab=cab)))


def list_compartments(*, session: Session, cab: str) -> Sequence[Compartment]:
    """Return a cabinet's compartments by label."""
    return reads.compartments_of(session=session, cab=cab)


# --- parcels --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParcelView:
    """A parcel row with what is derived from it at `now`."""

    parcel: Parcel
    erp_state: ErpOrderState
    deadline: datetime | None


def parcel_record(view: ParcelView) -> dict[str, Any]:
    """The ERP's view of a parcel (the API's `ParcelPublic`): the phone masked, no code hash."""
    row = view.parcel
    status = Status(row.status)
    state = order_state(status)
    return {
        "id": row.id,
        "parcel_id": row.parcel_id,
        "tracking_no": row.tracking_no,
        "order_no": row.order_no,
        "status": status,
        "erp_state": view.erp_state,
        "order_state": state.zh,
        "shipx_status": state.shipx,
        "cabinet_id": row.cabinet_id,
        "compartment": row.compartment,
        "size": row.size,
        "phone_masked": mask_phone(row.phone),
        "deposited_at": row.deposited_at,
        "deadline": view.deadline,
        "left_locker_at": row.left_locker_at,
        "length_mm": row.length_mm,
        "width_mm": row.width_mm,
        "height_mm": row.height_mm,
        "weight_g": row.weight_g,
        "courier_company": row.courier_company,
        "pickup_window_s": row.window_override_s,
        "updated_at": row.updated_at,
    }


def _view(row: Parcel, now: datetime) -> ParcelView:
    return ParcelView(row, erp_state(Status(row.status)), parcel_deadline(row, now))


def find_parcel(*, session: Session, parcel_id: str) -> Parcel | None:
    """Return a parcel row by its cabinet-made `parcel_id` or, failing that, its row id."""
    row = get_parcel_by_parcel_id(session=session, parcel_id=parcel_id)
    return row or session.get(Parcel, parcel_id)


def parcel_view(row: Parcel, now: datetime) -> ParcelView:
    """Return the API's view of a parcel row at `now`."""
    return _view(row, now)


def list_parcels(
    *,
    session: Session,
    now: datetime,
    scope: ParcelScope,
    cabinet: str | None = None,
    status: Status | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[ParcelView]:
    """Return the parcels `scope` admits, newest first, optionally of one cabinet and status."""
    rows = reads.parcels_in_scope(
        session=session,
        scope=scope,
        cabinet=cabinet,
        status=status,
        limit=min(limit, MAX_PAGE),
        offset=offset,
    )
    return [_view(row, now) for row in rows]


@dataclass(frozen=True)
class Tracking:
    """What `GET /tracking/{tracking_no}` shows: the parcel, its timeline, its overdue fee."""

    view: ParcelView
    timeline: Sequence[reads.TimelineRow]
    fee: OverdueFee | None


def tracking(
    *, connection: Connection, tracking_no: str, now: datetime, scope: ParcelScope
) -> Tracking | None:
    """Return the newest parcel with `tracking_no` (a re-sent shipment reuses it) that `scope`
    admits, and its story: another client's parcel with the number neither shows nor hides it."""
    found = reads.newest_parcel_tracked(connection=connection, tracking_no=tracking_no, scope=scope)
    if found is None:
        return None
    row, site, timeline = found
    core = parcel_to_core(row)
    fee = overdue_fee(core, site_policy(site), now) if site is not None else None
    view = ParcelView(row, erp_state(Status(row.status)), core.deadline(now))
    return Tracking(view, timeline, fee)


# --- what the access policy decides on ------------------------------------------------------------


def cabinet_resource(cabinet: Cabinet | None) -> Resource | None:
    """Return a cabinet as the access policy sees it (None: no such cabinet)."""
    return scoping.cabinet_resource(cabinet)


def parcel_resource(*, session: Session, row: Parcel | None) -> Resource | None:
    """Return a parcel as the access policy sees it (None: no such parcel)."""
    return scoping.parcel_resource(session, row)


def cabinet_row(*, session: Session, cab: str) -> Cabinet | None:
    """Return a cabinet's row by id."""
    return cabinet_by_id(session=session, cab=cab)
