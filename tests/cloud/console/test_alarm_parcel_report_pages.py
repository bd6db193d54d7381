"""The console's alarms, parcels and reports pages over HTTP: a manager acknowledges and
resolves an alarm (audited), another site's manager gets the 404 page, parcels are searched by a
phone's last 4 digits with the phone masked, the reports draw from vendored ECharts, every table
exports as CSV."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.api import create_app
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Alarm, AuditLog, CabinetCreate, SiteCreate
from cloud.services.accounts import add_account
from cloud.services.ingest import apply_pending, store_events
from cloud.settings import CloudSettings
from protocol.messages import DoorForced, DoorForcedData
from tests.cloud.db.builders import (
    CAB,
    CODE_KEY,
    PHONE,
    SEAL_KEY,
    SITE,
    T0,
    deposited,
    register_cabinet,
)

NOW = T0 + timedelta(minutes=5)
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite database for the module: the pages read through services that
    tests/cloud/db tests on both databases; signing in (argon2) is what costs here."""
    return f"sqlite:///{tmp_path_factory.mktemp('console') / 'cloud.db'}"


@pytest.fixture(scope="module")
def engine_with_data(db_url: str) -> Iterator[Engine]:
    upgrade(db_url)
    engine = make_engine(db_url)
    with Session(engine) as session:
        register_cabinet(session)
        repo.create_site(session=session, site_create=SiteCreate(id="site-2", name="B"), now=T0)
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id="CAB-2", site_id="site-2", name="B", address="2 Rd"),
            code_key=CODE_KEY,
            seal_key=SEAL_KEY,
            now=T0,
        )
        session.commit()
        for name, site in (("manager-a", SITE), ("manager-b", "site-2")):
            add_account(
                session=session,
                username=name,
                role="site_manager",
                password=PASSWORD,
                now=T0,
                site_ids=[site],
                phone="+8613900001111",
            )
        forced = DoorForced(id="f1", cab=CAB, seq=3, ts=T0, data=DoorForcedData(compartment="A02"))
        store_events(
            session=session, cab=CAB, envelopes=[deposited(1), deposited(2), forced], now=T0
        )
        session.rollback()
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def app_client(engine_with_data: Engine, db_url: str) -> Iterator[TestClient]:
    settings = CloudSettings(
        database_url=db_url, base_url="https://lockers.example", secret_key=SEAL_KEY.decode()
    )
    app = create_app(settings, engine=engine_with_data, clock=lambda: NOW)
    with TestClient(app, base_url="https://testserver") as client:
        yield client


def signed_in(client: TestClient, username: str) -> str:
    """Sign `username` in through the form, in English; return the session's CSRF token."""
    client.cookies.clear()
    client.get("/console/lang/en")
    form = client.get("/console/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    done = client.post(
        "/console/sign-in",
        data={"csrf": token, "username": username, "password": PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    page = client.get("/console/alarms")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def test_a_manager_acknowledges_then_resolves_a_forced_door(
    app_client: TestClient, engine_with_data: Engine
) -> None:
    csrf = signed_in(app_client, "manager-a")
    page = app_client.get("/console/alarms")
    assert page.status_code == 200
    assert "Door forced open" in page.text and "door A02" in page.text
    assert '<span id="nav-alarm-count" class="badge" title="1 alarms">1</span>' in page.text
    alarm_id = int(re.search(r'data-alarm="(\d+)"', page.text).group(1))  # type: ignore[union-attr]

    refused = app_client.post(f"/console/alarms/{alarm_id}/acknowledge", data={"note": "x"})
    assert refused.status_code == 403  # no CSRF token

    done = app_client.post(
        f"/console/alarms/{alarm_id}/acknowledge",
        data={"csrf": csrf, "note": "guard on the way"},
        follow_redirects=False,
    )
    assert (done.status_code, done.headers["location"]) == (303, "/console/alarms?done=acked")
    page = app_client.get("/console/alarms?done=acked")
    assert "acknowledged" in page.text and "guard on the way" in page.text

    app_client.post(f"/console/alarms/{alarm_id}/resolve", data={"csrf": csrf, "note": "fixed"})
    resolved = app_client.get("/console/alarms").text
    assert "No alarm here" in resolved and "nav-alarm-count" not in resolved
    assert "fixed" in app_client.get("/console/alarms?show=all").text
    exported = app_client.get("/console/alarms.csv?show=all")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert [(r["kind"], r["door"], r["resolved_by"] != "") for r in rows] == [
        ("door.forced", "A02", True)
    ]
    with Session(engine_with_data) as session:
        actions = [r.action for r in session.exec(select(AuditLog)).all()]
        assert "acknowledge_alarm" in actions and "resolve_alarm" in actions


def test_another_sites_manager_sees_nothing_and_gets_the_404_page(
    app_client: TestClient, engine_with_data: Engine
) -> None:
    csrf = signed_in(app_client, "manager-b")
    resolved = app_client.get("/console/alarms").text
    assert "No alarm here" in resolved and "nav-alarm-count" not in resolved
    with Session(engine_with_data) as session:
        alarm_id = session.exec(select(Alarm.id)).one()
    refused = app_client.post(
        f"/console/alarms/{alarm_id}/acknowledge", data={"csrf": csrf, "note": "mine?"}
    )
    missing = app_client.post("/console/alarms/99999/acknowledge", data={"csrf": csrf})
    assert refused.status_code == missing.status_code == 404
    # The same page but for the path it names: nothing says the alarm exists.
    assert refused.text.replace(f"/{alarm_id}/", "/N/") == missing.text.replace("/99999/", "/N/")
    assert "No parcel matches" in app_client.get(f"/console/parcels?q={PHONE[-4:]}").text
    assert app_client.get("/console/parcels/P000001").status_code == 404


def test_parcels_are_found_by_the_phones_last_digits_masked_with_a_timeline(
    app_client: TestClient, engine_with_data: Engine
) -> None:
    signed_in(app_client, "manager-a")
    page = app_client.get(f"/console/parcels?q={PHONE[-4:]}&state=in_locker")
    assert page.status_code == 200
    assert "SF0000000001" in page.text and "SF0000000002" in page.text
    assert PHONE not in page.text and PHONE[3:] not in page.text and "1234" in page.text
    timeline = app_client.get("/console/parcels/P000001")
    assert "Timeline" in timeline.text and "in locker" in timeline.text
    exported = app_client.get(f"/console/parcels.csv?q={PHONE[-4:]}")
    text = exported.content.decode("utf-8-sig")
    assert exported.content.startswith(b"\xef\xbb\xbf") and PHONE not in text
    assert len(list(csv.reader(io.StringIO(text)))) == 3
    assert "SF0000000002" in app_client.get("/console/parcels/aged?days=0").text


def test_reports_draw_with_vendored_echarts_and_export_csv(
    app_client: TestClient, engine_with_data: Engine
) -> None:
    signed_in(app_client, "manager-a")
    page = app_client.get("/console/reports?first=2024-05-01&last=2024-05-01")
    assert page.status_code == 200
    assert '<script src="/console/vendor/echarts.min.js">' in page.text
    assert "Deposits and pickups per day" in page.text and "Asia/Shanghai" in page.text
    script = app_client.get("/console/vendor/echarts.min.js")
    assert script.status_code == 200 and "echarts" in script.text[:2000]
    assert app_client.get("/console/vendor/..%2Fconsole.css").status_code == 404
    exported = app_client.get(
        "/console/reports/deposits_pickups.csv?first=2024-05-01&last=2024-05-01"
    )
    assert exported.content.decode("utf-8-sig").splitlines() == [
        "day,deposits,pickups",
        "2024-05-01,2,0",
    ]
    assert app_client.get("/console/reports/nope.csv").status_code == 404
