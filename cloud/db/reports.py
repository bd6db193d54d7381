"""The reports' SQL: a period's parcels and status changes at the cabinets a scope admits.

Reads plain columns (Core rows, no ORM objects: a year of a city is 100,000s of rows) and leaves
the bucketing to `cloud.core.reports`, which knows the site's days and hours.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from cloud.core.access import CabinetScope
from cloud.core.reports import Change, ParcelFact
from cloud.db.models import Cabinet, Compartment, Courier, Parcel, ParcelEvent, Site
from cloud.db.rows import core_rows
from cloud.db.scoping import cabinet_where


def _cabinets(scope: CabinetScope, site_id: str | None) -> Any:
    statement = select(Cabinet.id).where(cabinet_where(scope))
    if site_id:
        statement = statement.where(Cabinet.site_id == site_id)
    return statement


def parcel_facts(
    *,
    session: Session,
    scope: CabinetScope,
    start: datetime,
    end: datetime,
    site_id: str | None = None,
) -> list[ParcelFact]:
    """Return the parcels deposited before `end` that had not left before `start`."""
    carrier = func.coalesce(
        col(Courier.carrier), col(Parcel.owner_carrier_id), col(Parcel.courier_company), ""
    )
    statement = (
        select(Parcel.deposited_at, Parcel.left_locker_at, Parcel.status, carrier)
        .select_from(Parcel)
        .outerjoin(Courier, col(Courier.id) == col(Parcel.courier_id))
        .where(
            col(Parcel.cabinet_id).in_(_cabinets(scope, site_id)),
            col(Parcel.deposited_at).is_not(None),
            col(Parcel.deposited_at) < end,
            or_(col(Parcel.left_locker_at).is_(None), col(Parcel.left_locker_at) >= start),
        )
    )
    return [ParcelFact(*row) for row in core_rows(session, statement)]


def status_changes(
    *,
    session: Session,
    scope: CabinetScope,
    start: datetime,
    end: datetime,
    statuses: tuple[str, ...],
    site_id: str | None = None,
) -> list[Change]:
    """Return the timeline rows of `statuses` in [start, end) at the scope's cabinets."""
    statement = (
        select(ParcelEvent.status, ParcelEvent.at)
        .join(Parcel, col(Parcel.id) == col(ParcelEvent.parcel_row_id))
        .where(
            col(Parcel.cabinet_id).in_(_cabinets(scope, site_id)),
            col(ParcelEvent.status).in_(statuses),
            col(ParcelEvent.at) >= start,
            col(ParcelEvent.at) < end,
        )
    )
    return [Change(*row) for row in core_rows(session, statement)]


def door_count(*, session: Session, scope: CabinetScope, site_id: str | None = None) -> int:
    """Return how many doors the scope's cabinets have."""
    statement = select(func.count()).where(
        col(Compartment.cabinet_id).in_(_cabinets(scope, site_id))
    )
    return int(core_rows(session, statement).scalar() or 0)


def site_zones(*, session: Session, scope: CabinetScope, site_id: str | None = None) -> set[str]:
    """Return the time zones of the sites whose cabinets the scope admits."""
    statement = (
        select(Site.timezone)
        .join(Cabinet, col(Cabinet.site_id) == col(Site.id))
        .where(cabinet_where(scope))
        .distinct()
    )
    if site_id:
        statement = statement.where(Site.id == site_id)
    return {zone for (zone,) in core_rows(session, statement)}


def sites_in_scope(*, session: Session, scope: CabinetScope) -> list[tuple[str, str]]:
    """Return (id, name) of the sites with a cabinet the scope admits, by name."""
    statement = (
        select(Site.id, Site.name)
        .join(Cabinet, col(Cabinet.site_id) == col(Site.id))
        .where(cabinet_where(scope))
        .distinct()
        .order_by(col(Site.name), col(Site.id))
    )
    return [(site_id, name) for site_id, name in core_rows(session, statement)]
