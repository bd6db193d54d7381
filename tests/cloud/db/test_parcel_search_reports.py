"""The console's parcels and reports on SQLite and PostgreSQL: search by tracking no, order no
and a phone's last 4 digits, state and age filters, a timeline, the aged parcels, the reports'
tables and CSV, all within the caller's sites, phones masked."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from sqlmodel import Session

from cloud.core.access import Principal, PrincipalKind
from cloud.db import repo
from cloud.db.models import CabinetCreate, Courier, Parcel, SiteCreate
from cloud.errors import Forbidden, InvalidInput, NotFound
from cloud.services import parcel_search, reports
from cloud.services.ingest import apply_pending, store_events
from tests.cloud.db.builders import (
    CAB,
    CODE_KEY,
    PHONE,
    SEAL_KEY,
    SITE,
    T0,
    deposited,
    picked_up,
    register_cabinet,
)

# T0 is 10:00 on 1 May 2024 in Asia/Shanghai, the site's zone.
MANAGER = Principal(PrincipalKind.SITE_MANAGER, "mgr-1", site_ids=frozenset({SITE}))
STRANGER = Principal(PrincipalKind.SITE_MANAGER, "mgr-9", site_ids=frozenset({"site-2"}))
ADMIN = Principal(PrincipalKind.OPERATOR_ADMIN, "admin")
CARRIER = Principal(PrincipalKind.CARRIER, "c-1", carrier_id="JD")


@pytest.fixture
def parcels(session: Session) -> Session:
    """Three deposits at T0+1..3 s (P1..P3, phone ...1234), P1 picked up 2 h later; a second
    site with one cabinet and nothing in it."""
    register_cabinet(session)
    session.add(Courier(id="courier-7", carrier="SF", pin_hash="x", created_at=T0))
    repo.create_site(session=session, site_create=SiteCreate(id="site-2", name="Other"), now=T0)
    repo.create_cabinet(
        session=session,
        cabinet_create=CabinetCreate(id="CAB-2", site_id="site-2", name="B", address="2 Road"),
        code_key=CODE_KEY,
        seal_key=SEAL_KEY,
        now=T0,
    )
    session.commit()
    pickup = picked_up(4, 1).model_copy(update={"ts": T0 + timedelta(hours=2)})
    store_events(session=session, cab=CAB, envelopes=[*map(deposited, (1, 2, 3)), pickup], now=T0)
    session.rollback()
    assert apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY).anomalies == 0
    row = session.get(Parcel, "P000002")
    assert row is not None
    row.order_no = "ORD-778"
    session.add(row)
    session.commit()
    return session


def search(session: Session, principal: Principal = MANAGER, **kwargs: object) -> list[str]:
    hits = parcel_search.search(
        session=session, principal=principal, now=T0 + timedelta(hours=3), **kwargs
    )
    return [hit.tracking_no for hit in hits]


def test_search_age_aged_and_timeline_within_the_managers_sites(parcels: Session) -> None:
    assert search(parcels, query="SF0000000002") == ["SF0000000002"]
    assert search(parcels, query="ORD-7") == ["SF0000000002"]
    assert search(parcels, query=PHONE[-4:]) == ["SF0000000003", "SF0000000002", "SF0000000001"]
    assert search(parcels, query="9999") == []
    assert search(parcels, statuses=["in_locker"]) == ["SF0000000003", "SF0000000002"]
    assert search(parcels, STRANGER, query=PHONE[-4:]) == []
    assert len(search(parcels, ADMIN)) == 3
    assert search(parcels, CARRIER) == []  # JD's couriers deposited nothing here
    (hit,) = parcel_search.search(
        session=parcels, principal=MANAGER, now=T0 + timedelta(hours=3), query="SF0000000001"
    )
    assert hit.phone_masked != PHONE and hit.phone_masked.endswith("1234")
    assert PHONE not in repr(hit)
    assert (hit.status, hit.age_s, hit.cabinet_name) == ("picked_up", 2 * 3600 - 1, "Gate 1")
    with pytest.raises(InvalidInput):
        search(parcels, query="x' OR 1=1 --")
    with pytest.raises(InvalidInput):
        search(parcels, statuses=["lost"])

    # The age filter and the aged-parcel report, four days on.
    later = T0 + timedelta(days=4)
    hits = parcel_search.search(session=parcels, principal=MANAGER, now=later, min_age_days=3)
    assert [h.tracking_no for h in hits] == ["SF0000000003", "SF0000000002", "SF0000000001"]
    aged = parcel_search.aged(session=parcels, principal=MANAGER, now=later, min_age_days=3)
    assert [h.tracking_no for h in aged] == ["SF0000000002", "SF0000000003"]  # oldest first
    assert all(h.overdue and h.age_s and h.age_s > 3 * 86400 for h in aged)
    assert parcel_search.aged(session=parcels, principal=MANAGER, now=T0, min_age_days=3) == []
    assert parcel_search.aged(session=parcels, principal=STRANGER, now=later) == []

    # One parcel's timeline; another site's parcel is missing, in the same words.
    hit, steps = parcel_search.timeline(
        session=parcels, principal=MANAGER, parcel_row_id="P000001", now=T0
    )
    assert hit.tracking_no == "SF0000000001"
    assert [s.status for s in steps] == ["in_locker", "picked_up"]
    with pytest.raises(NotFound) as outside:
        parcel_search.timeline(session=parcels, principal=STRANGER, parcel_row_id="P000001", now=T0)
    with pytest.raises(NotFound) as missing:
        parcel_search.timeline(session=parcels, principal=STRANGER, parcel_row_id="nope", now=T0)
    assert str(outside.value) == str(missing.value)


def test_the_reports_of_a_day_at_the_site(parcels: Session) -> None:
    day = date(2024, 5, 1)
    built = reports.build(
        session=parcels, principal=MANAGER, first=day, last=day, now=T0 + timedelta(hours=14)
    )
    assert built.doors == 4 and str(built.period.zone) == "Asia/Shanghai"
    t = built.tables
    assert t["deposits_pickups"].rows == (("2024-05-01", 3, 1),)
    assert dict(t["dwell"].rows)["1-4h"] == 1 and sum(n for _, n in t["dwell"].rows) == 1
    occupancy = dict((hour, parcels_) for hour, parcels_, _ in t["occupancy"].rows)
    assert (occupancy["09:00"], occupancy["10:00"], occupancy["12:00"]) == (0, 3, 2)
    assert t["carriers"].rows == (("SF", 3, 1, 0),)
    assert t["expiries_returns"].rows == (("2024-05-01", 0, 0, 0),)

    text = reports.to_csv(t["deposits_pickups"])
    assert list(csv.reader(io.StringIO(text))) == [
        ["day", "deposits", "pickups"],
        ["2024-05-01", "3", "1"],
    ]
    assert reports.rows_to_csv(("carrier",), [("=HYPERLINK(1)",)]).endswith("'=HYPERLINK(1)\r\n")

    other = reports.build(session=parcels, principal=STRANGER, first=day, last=day, now=T0)
    assert other.tables["deposits_pickups"].rows == (("2024-05-01", 0, 0),)
    with pytest.raises(NotFound):
        reports.build(
            session=parcels, principal=STRANGER, first=day, last=day, now=T0, site_id=SITE
        )
    with pytest.raises(Forbidden):
        reports.build(session=parcels, principal=CARRIER, first=day, last=day, now=T0)
    with pytest.raises(InvalidInput):
        reports.build(
            session=parcels, principal=MANAGER, first=day, last=day - timedelta(1), now=T0
        )
