"""The policy's list scopes (`cloud.core.access`) as SQL: WHERE clauses and resources.

`parcel_where(scope)` / `cabinet_where(scope)` admit exactly the rows `ParcelScope.admits` /
`CabinetScope.admits` would (tests/cloud/core/test_access.py checks both against one matrix),
so a list never shows what `decide` would answer 404 for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, false, or_, true
from sqlmodel import Session, col, select

from cloud.core.access import CabinetScope, ParcelScope, Resource, ResourceKind
from cloud.db.models import Cabinet, Courier, Parcel


def _cabinets_of_sites(site_ids: frozenset[str]) -> Any:
    return select(Cabinet.id).where(col(Cabinet.site_id).in_(sorted(site_ids)))


def cabinet_where(scope: CabinetScope) -> Any:
    """The WHERE clause on `cabinets` of the cabinets `scope` admits."""
    if scope.everything:
        return true()
    clauses = []
    if scope.site_ids:
        clauses.append(col(Cabinet.site_id).in_(sorted(scope.site_ids)))
    if scope.cabinet_id is not None:
        clauses.append(Cabinet.id == scope.cabinet_id)
    return or_(*clauses) if clauses else false()


def parcel_where(scope: ParcelScope) -> Any:
    """The WHERE clause on `parcels` of the parcels `scope` admits."""
    if scope.everything:
        return true()
    clauses = []
    if scope.site_ids:
        clauses.append(col(Parcel.cabinet_id).in_(_cabinets_of_sites(scope.site_ids)))
    if scope.owner_carrier_id is not None:
        clauses.append(Parcel.owner_carrier_id == scope.owner_carrier_id)
    if scope.owner_merchant_id is not None:
        clauses.append(Parcel.owner_merchant_id == scope.owner_merchant_id)
    if scope.courier_carrier_id is not None:
        by_courier = [
            col(Parcel.courier_id).in_(
                select(Courier.id).where(Courier.carrier == scope.courier_carrier_id)
            )
        ]
        if not scope.courier_any_owner:
            by_courier += [
                col(Parcel.owner_carrier_id).is_(None),
                col(Parcel.owner_merchant_id).is_(None),
            ]
        if scope.courier_site_ids is not None:
            by_courier.append(
                col(Parcel.cabinet_id).in_(_cabinets_of_sites(scope.courier_site_ids))
            )
        clauses.append(and_(*by_courier))
    if scope.cabinet_id is not None:
        at_cabinet = [Parcel.cabinet_id == scope.cabinet_id]
        if scope.parcel_ids is not None:
            at_cabinet.append(col(Parcel.id).in_(sorted(scope.parcel_ids)))
        clauses.append(and_(*at_cabinet))
    return or_(*clauses) if clauses else false()


def cabinet_resource(cabinet: Cabinet | None) -> Resource | None:
    """The policy's view of a cabinet row (None: no such cabinet)."""
    if cabinet is None:
        return None
    return Resource(ResourceKind.CABINET, cabinet.id, site_id=cabinet.site_id)


def parcel_resource(session: Session, row: Parcel | None) -> Resource | None:
    """The policy's view of a parcel row: where it is, who announced it, whose courier."""
    if row is None:
        return None
    cabinet = session.get(Cabinet, row.cabinet_id)
    courier = session.get(Courier, row.courier_id) if row.courier_id else None
    return Resource(
        ResourceKind.PARCEL,
        row.id,
        site_id=cabinet.site_id if cabinet is not None else None,
        cabinet_id=row.cabinet_id,
        owner_carrier_id=row.owner_carrier_id,
        owner_merchant_id=row.owner_merchant_id,
        courier_carrier_id=courier.carrier if courier is not None else None,
    )
