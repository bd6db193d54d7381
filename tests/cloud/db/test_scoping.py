"""The list scopes as SQL admit exactly the rows the policy's `admits` does, on both databases."""

from __future__ import annotations

import pytest
from sqlmodel import Session, col, select

from cloud.core.access import Resource, ResourceKind, cabinet_scope, parcel_scope
from cloud.db import repo
from cloud.db.models import Cabinet as CabinetRow
from cloud.db.models import CabinetCreate, Carrier, Courier, Parcel, SiteCreate
from cloud.db.scoping import cabinet_where, parcel_resource, parcel_where
from tests.cloud.core.test_access import PRINCIPALS, WORLD
from tests.cloud.db.builders import PHONE, SEAL_KEY, T0

# The world's parcels: which courier deposited each (the courier's carrier is in `couriers`).
COURIER_OF = {"SF": "sf-1", "JD": "jd-1"}


def _build(session: Session) -> None:
    for site in ("s1", "s2"):
        repo.create_site(session=session, site_create=SiteCreate(id=site, name=site), now=T0)
    for cab, site in (("c1", "s1"), ("c2", "s2")):
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=cab, site_id=site, name=cab),
            code_key=b"k" * 32,
            seal_key=SEAL_KEY,
            now=T0,
        )
    for carrier, courier in COURIER_OF.items():
        session.add(Carrier(id=carrier, name=carrier, created_at=T0))
        session.flush()
        session.add(Courier(id=courier, carrier=carrier, pin_hash="x", created_at=T0))
    for resource in WORLD.values():
        if resource.kind is not ResourceKind.PARCEL:
            continue
        assert resource.id is not None and resource.cabinet_id is not None
        session.add(
            Parcel(
                id=resource.id,
                tracking_no=resource.id.upper(),
                status="in_locker",
                cabinet_id=resource.cabinet_id,
                phone=PHONE,
                courier_id=COURIER_OF.get(resource.courier_carrier_id or ""),
                owner_carrier_id=resource.owner_carrier_id,
                owner_merchant_id=resource.owner_merchant_id,
                created_at=T0,
                updated_at=T0,
            )
        )
    session.commit()


@pytest.mark.parametrize("who", list(PRINCIPALS))
def test_parcel_and_cabinet_where_clauses_match_the_policy(session: Session, who: str) -> None:
    _build(session)
    principal = PRINCIPALS[who]
    parcels = {r for r in WORLD.values() if r.kind is ResourceKind.PARCEL}
    expected = {r.id for r in parcels if parcel_scope(principal).admits(r)}
    listed = set(session.exec(select(Parcel.id).where(parcel_where(parcel_scope(principal)))))
    assert listed == expected

    cabinets = {r for r in WORLD.values() if r.kind is ResourceKind.CABINET}
    scope = cabinet_scope(principal)
    expected = {r.id for r in cabinets if scope.admits(site_id=r.site_id, cabinet_id=r.id)}
    listed = set(session.exec(select(CabinetRow.id).where(cabinet_where(scope))))
    assert listed == expected


def test_a_parcel_rows_resource_names_its_site_owner_and_couriers_carrier(
    session: Session,
) -> None:
    _build(session)
    row = session.exec(select(Parcel).where(col(Parcel.id) == "p-shop")).one()
    assert parcel_resource(session, row) == WORLD["parcel shop announced, SF courier, at c2"]
    assert parcel_resource(session, None) is None
    assert isinstance(parcel_resource(session, row), Resource)
