"""A carrier account's console pages: its parcels (only those its couriers deposited or it
announced) and its settlement statements on the page, as CSV and as XLSX. Another carrier's
parcel or statement is the 404 a missing one gets; an operator picks any carrier's statement; a
site manager has none (a statement spans every site)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.models import Carrier, Courier, Parcel
from cloud.services.accounts import add_account
from cloud.services.ingest import apply_pending, store_events
from protocol.messages import ParcelDeposited, ParcelDepositedData, Size
from tests.cloud.console.conftest import PASSWORD, TRACKING, sign_in
from tests.cloud.db.builders import CAB, PHONE, SEAL_KEY, T0, Recording

OTHER_TRACKING = "ZT5550001111"
MONTH = "2024-05"  # T0's month in the site's zone


@pytest.fixture
def two_carriers(world: Engine) -> Engine:
    """The console world (SF's courier sf-1 deposited TRACKING in CAB-1 A01), plus ZTO with its
    courier, its account and a parcel of its own in A02."""
    with Session(world) as session:
        session.add(Carrier(id="ZTO", name="ZTO Express", created_at=T0))
        session.flush()
        session.add(Courier(id="zto-1", carrier="ZTO", pin_hash="x", created_at=T0))
        session.commit()
        add_account(
            session=session, username="zto-office", role="carrier", password=PASSWORD, now=T0,
            carrier_id="ZTO",
        )  # fmt: skip
    event = ParcelDeposited(
        id=f"{CAB}-e2", cab=CAB, seq=2, ts=T0 + timedelta(seconds=2),
        data=ParcelDepositedData(
            parcel_id="P000002", compartment="A02", size=Size.M, tracking_no=OTHER_TRACKING,
            phone=PHONE, courier_id="zto-1",
        ),
    )  # fmt: skip
    with Session(world) as session:
        store_events(session=session, cab=CAB, envelopes=[event], now=T0 + timedelta(minutes=1))
        session.rollback()
        apply_pending(
            session=session, cab=CAB, now=T0 + timedelta(minutes=1), seal_key=SEAL_KEY,
            randbelow=Recording(),
        )  # fmt: skip
    return world


def row_id(engine: Engine, tracking_no: str) -> str:
    with Session(engine) as session:
        return session.exec(select(Parcel.id).where(Parcel.tracking_no == tracking_no)).one()


def listed(html: str) -> set[str]:
    """The parcels a list page links to (their row ids)."""
    return set(re.findall(r'href="/console/parcels/([^"/?.]+)"', html)) - {"aged"}


def main_of(html: str) -> str:
    return html[html.index("<main>") : html.index("</main>")]


@pytest.fixture
def english(client: TestClient) -> TestClient:
    client.get("/console/lang/en")
    return client


def test_a_carrier_sees_its_own_parcels_and_another_carriers_is_a_404(
    two_carriers: Engine, english: TestClient
) -> None:
    sf, zto = row_id(two_carriers, TRACKING), row_id(two_carriers, OTHER_TRACKING)
    client = sign_in(english, "sf-office")
    assert listed(client.get("/console/parcels").text) == {sf}
    assert listed(client.get(f"/console/parcels?q={OTHER_TRACKING}").text) == set()
    own = client.get(f"/console/parcels/{sf}")
    assert own.status_code == 200 and TRACKING in own.text
    other = client.get(f"/console/parcels/{zto}")
    missing = client.get("/console/parcels/no-such-parcel")
    assert other.status_code == missing.status_code == 404
    assert main_of(other.text) == main_of(missing.text)  # the same words: no oracle

    sign_in(client, "zto-office")
    assert listed(client.get("/console/parcels").text) == {zto}
    assert client.get(f"/console/parcels/{sf}").status_code == 404


def test_a_carrier_reads_its_statement_on_the_page_as_csv_and_xlsx_and_no_one_elses(
    two_carriers: Engine, english: TestClient
) -> None:
    client = sign_in(english, "sf-office")
    assert 'href="/console/statements"' in client.get("/console/couriers").text  # in the nav
    page = client.get(f"/console/statements?period={MONTH}")
    assert page.status_code == 200
    assert 'data-carrier="SF"' in page.text and f'data-period="{MONTH}"' in page.text
    assert f'data-tracking="{TRACKING}"' in page.text and OTHER_TRACKING not in page.text
    deposits = page.text.split('<tr data-currency="CNY">')[1].split("</td>")[1]
    assert deposits.endswith(">1")  # one deposit in the month's totals
    assert "<select" not in main_of(page.text).split("</form>")[0]  # no carrier to choose

    # Another carrier's statement and an unknown carrier's answer alike: 404.
    other = client.get(f"/console/statements?carrier=ZTO&period={MONTH}")
    unknown = client.get(f"/console/statements?carrier=NOPE&period={MONTH}")
    assert other.status_code == unknown.status_code == 404
    assert main_of(other.text) == main_of(unknown.text)
    assert client.get(f"/console/statements.csv?carrier=ZTO&period={MONTH}").status_code == 404
    assert client.get(f"/console/statements.xlsx?carrier=ZTO&period={MONTH}").status_code == 404

    exported = client.get(f"/console/statements.csv?period={MONTH}")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert 'filename="statement-SF-2024-05.csv"' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["tracking_no"] for r in rows if r["parcel"] != "#total"] == [TRACKING]
    book = client.get(f"/console/statements.xlsx?period={MONTH}")
    assert book.status_code == 200
    sheet = load_workbook(io.BytesIO(book.content)).active
    cells = [row[1] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert TRACKING in cells and OTHER_TRACKING not in cells

    # An operator admin picks any carrier; a site manager has no statements at all.
    sign_in(client, "ops")
    page = client.get(f"/console/statements?carrier=ZTO&period={MONTH}")
    assert page.status_code == 200 and f'data-tracking="{OTHER_TRACKING}"' in page.text
    assert '<option value="SF"' in page.text and '<option value="ZTO" selected' in page.text
    sign_in(client, "mgr-a")
    assert client.get(f"/console/statements?period={MONTH}").status_code == 403
    assert 'href="/console/statements"' not in client.get("/console/fleet").text
