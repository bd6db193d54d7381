"""The alarms, parcels and reports pages in Debian's Chromium: a manager signs in, sees a forced
door among the alarms, acknowledges it with a note; the reports draw their charts; screenshots of
every page in both languages at 1440x900 and 768x1024 land in tests/artifacts/console/.

One browser and one server (uvicorn in a thread, on a free port) for the module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from cloud.api import create_app
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Cabinet, Carrier, Courier, SiteCreate
from cloud.fakes.background import BackgroundUvicorn
from cloud.services.accounts import add_account
from cloud.services.alarms import evaluate
from cloud.services.expiry import run_due
from cloud.services.ingest import apply_pending, store_events
from cloud.settings import CloudSettings
from protocol.messages import (
    DoorForced,
    DoorForcedData,
    DoorLeftOpen,
    DoorLeftOpenData,
    EventBase,
    KeypadLockout,
    KeypadLockoutData,
    LockFault,
    LockFaultData,
    ParcelDeposited,
    ParcelDepositedData,
    ParcelPickedUp,
    ParcelPickedUpData,
    PickupMethod,
    Size,
)
from tests.cabinet.kiosk.browser import launch_chromium
from tests.cloud.db.builders import CAB, SEAL_KEY, SITE, T0, register_cabinet
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "tests" / "artifacts" / "console"
PASSWORD = "correct horse battery staple"
NOW = T0 + timedelta(days=13, hours=3)  # 13:00 local on 14 May 2024
VIEWPORTS = {"1440x900": (1440, 900), "768x1024": (768, 1024)}
PHONES = ["+8613812341234", "+8613998765678", "+8615000002468"]
CARRIERS = {"sf-1": "SF", "jd-1": "JD", "zto-1": "ZTO"}
ENGINES: dict[str, Engine] = {}  # the server's database, for a test that adds an event


def _story() -> list[EventBase]:
    """Two weeks at one cabinet: deposits every few hours, most picked up, a few still in."""
    events: list[EventBase] = []
    seq = 0
    n = 0
    for day in range(14):
        for hour in (1, 3, 6, 9):  # UTC: 09:00, 11:00, 14:00, 17:00 local
            n += 1
            seq += 1
            at = T0 + timedelta(days=day, hours=hour - 2)
            courier = list(CARRIERS)[n % 3]
            door = f"A{(n % 12) + 1:02d}"
            events.append(
                ParcelDeposited(
                    id=f"e{seq}",
                    cab=CAB,
                    seq=seq,
                    ts=at,
                    data=ParcelDepositedData(
                        parcel_id=f"P{n:06d}",
                        compartment=door,
                        size=Size.M,
                        tracking_no=f"SF{7000000000 + n}",
                        phone=PHONES[n % 3],
                        courier_id=courier,
                    ),
                )
            )
            if n % 5 and day < 13:  # most are picked up, after 1 to 30 hours
                seq += 1
                events.append(
                    ParcelPickedUp(
                        id=f"e{seq}",
                        cab=CAB,
                        seq=seq,
                        ts=at + timedelta(hours=1 + (n * 7) % 30),
                        data=ParcelPickedUpData(
                            compartment=door, parcel_id=f"P{n:06d}", method=PickupMethod.CODE
                        ),
                    )
                )
    late = NOW - timedelta(hours=2)
    for kind in range(3):
        seq += 1
        events.append(
            KeypadLockout(
                id=f"e{seq}",
                cab=CAB,
                seq=seq,
                ts=late + timedelta(minutes=3 * kind),
                data=KeypadLockoutData(seconds=60),
            )
        )
    for event_type, data in (
        (DoorLeftOpen, DoorLeftOpenData(compartment="A03", seconds=120)),
        (LockFault, LockFaultData(compartment="A07", detail="bolt did not retract")),
        (DoorForced, DoorForcedData(compartment="A02")),
    ):
        seq += 1
        events.append(event_type(id=f"e{seq}", cab=CAB, seq=seq, ts=late, data=data))
    return events


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db_url = f"sqlite:///{tmp_path_factory.mktemp('console-browser') / 'cloud.db'}"
    upgrade(db_url)
    engine: Engine = make_engine(db_url)
    with Session(engine) as session:
        register_cabinet(session, compartments=12)
        for courier, carrier in CARRIERS.items():
            session.add(Carrier(id=carrier, name=carrier, created_at=T0))
            session.flush()
            session.add(Courier(id=courier, carrier=carrier, pin_hash="x", created_at=T0))
        repo.create_site(session=session, site_create=SiteCreate(id="site-2", name="B"), now=T0)
        session.commit()
        add_account(
            session=session,
            username="manager",
            role="site_manager",
            password=PASSWORD,
            now=T0,
            site_ids=[SITE],
            phone="+8613900001111",
        )
        add_account(
            session=session, username="sf-office", role="carrier", password=PASSWORD, now=T0,
            carrier_id="SF",
        )  # fmt: skip
        # As it happened: each event applied when it came, expiry run every 6 hours between.
        checkpoint = T0
        for event in sorted(_story(), key=lambda e: e.seq):
            while checkpoint < event.ts:
                run_due(session=session, now=checkpoint, seal_key=SEAL_KEY)
                checkpoint += timedelta(hours=6)
            session.rollback()
            store_events(session=session, cab=CAB, envelopes=[event], now=event.ts)
            session.rollback()
            apply_pending(session=session, cab=CAB, now=event.ts, seal_key=SEAL_KEY)
        run_due(session=session, now=NOW, seal_key=SEAL_KEY)
        session.rollback()
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        cabinet.online, cabinet.last_seen_at = False, NOW - timedelta(minutes=40)
        cabinet.presence_since = cabinet.last_seen_at
        session.add(cabinet)
        session.commit()
        evaluate(session=session, now=NOW)
    ENGINES[db_url] = engine
    settings = CloudSettings(database_url=db_url, secret_key=SEAL_KEY.decode())
    app = create_app(settings, engine=engine, clock=lambda: NOW)
    try:
        with BackgroundUvicorn(app, free_port(), name="console") as served:
            yield served.url
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def signed_in_page(
    browser: Any, server: str, *, lang: str, size: tuple[int, int], username: str = "manager"
) -> Any:
    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
    page = context.new_page()
    page.goto(f"{server}/console/lang/{lang}?next=/console/sign-in")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit].primary")
    page.wait_for_url("**/console/couriers" if username == "sf-office" else "**/console/fleet")
    return page


def test_a_manager_acknowledges_a_forced_door(browser: Any, server: str) -> None:
    page = signed_in_page(browser, server, lang="en", size=(1440, 900))
    page.click("nav.main >> text=Alarms")
    row = page.locator("tr", has_text="Door forced open")
    assert row.count() == 1 and "door A02" in row.inner_text()
    assert page.locator("tr", has_text="Code guessing").count() == 1
    assert page.locator("tr", has_text="Cabinet offline").count() == 1
    row.locator("summary").click()
    row.locator("textarea[name=note]").fill("guard on the way")
    row.locator("button", has_text="Acknowledge").click()
    page.wait_for_url("**/console/alarms?done=acked")
    acked = page.locator("tr", has_text="Door forced open")
    assert "acknowledged" in acked.inner_text() and "guard on the way" in acked.inner_text()
    assert "manager" in acked.inner_text()
    page.context.close()


def test_the_reports_draw_their_charts(browser: Any, server: str) -> None:
    page = signed_in_page(browser, server, lang="zh-CN", size=(1440, 900))
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/console/reports?first=2024-05-01&last=2024-05-14")
    page.wait_for_selector(".chart canvas")
    assert page.locator(".chart canvas").count() == 5
    assert errors == []
    page.context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_screenshots_of_every_page(browser: Any, server: str, lang: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pages = {
        "alarms": "/console/alarms",
        "parcels": "/console/parcels?q=1234",
        "parcels-aged": "/console/parcels/aged?days=1",
        "parcels-timeline": "/console/parcels/P000001",
        "reports": "/console/reports?first=2024-05-01&last=2024-05-14",
    }
    for size_name, size in VIEWPORTS.items():
        page = signed_in_page(browser, server, lang=lang, size=size)
        for name, path in pages.items():
            page.goto(server + path)
            if name == "reports":
                page.wait_for_selector(".chart canvas")
            page.screenshot(path=str(SHOTS / f"{name}-{lang}-{size_name}.png"), full_page=True)
            # Nothing wider than the screen: tables scroll inside their own box.
            overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
            assert not overflow, f"{name} ({lang}, {size_name}) is wider than the screen"
        page.context.close()


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_a_carriers_statement_page_fits_both_screens(browser: Any, server: str, lang: str) -> None:
    for size_name, size in VIEWPORTS.items():
        page = signed_in_page(browser, server, lang=lang, size=size, username="sf-office")
        page.click("nav.main >> text=" + ("对账单" if lang == "zh-CN" else "Statements"))
        page.goto(f"{server}/console/statements?period=2024-05")
        assert page.locator("tr[data-tracking]").count() > 10  # SF's deposits of May
        assert page.locator("table.totals tr[data-currency]").count() == 1
        page.screenshot(path=str(SHOTS / f"statements-{lang}-{size_name}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        assert not overflow, f"statements ({lang}, {size_name}) is wider than the screen"
        page.context.close()


def test_a_new_alarm_reaches_the_open_alarms_page_and_details_read_in_its_language(
    browser: Any, server: str
) -> None:
    """Last in the module: it adds an alarm the screenshots above do not show."""
    page = signed_in_page(browser, server, lang="zh-CN", size=(1440, 900))
    page.goto(f"{server}/console/alarms")
    page.wait_for_selector("#live:not(.off)")  # the stream is open
    page.evaluate("window.notReloaded = true")
    # Stored in English ("120 s", "offline for 40 min"), read in the page's language.
    assert "已开 120 秒" in page.locator("tr[data-alarm]", has_text="柜门未关").inner_text()
    assert "已离线 40 分钟" in page.locator("tr[data-alarm]", has_text="柜机离线").inner_text()
    before = page.inner_text("#alarm-count")
    seq = max(event.seq for event in _story()) + 1
    fault = LockFault(
        id=f"e{seq}", cab=CAB, seq=seq, ts=NOW,
        data=LockFaultData(compartment="A09", detail="bolt did not retract"),
    )  # fmt: skip
    changed_at = time.monotonic()
    with Session(next(iter(ENGINES.values()))) as session:  # what the worker does with it
        store_events(session=session, cab=CAB, envelopes=[fault], now=NOW)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=NOW, seal_key=SEAL_KEY)
    page.wait_for_selector('tr[data-alarm]:has-text("A09")', timeout=5000)
    latency = time.monotonic() - changed_at
    assert page.evaluate("window.notReloaded") is True
    assert latency <= 2.0, f"the alarm took {latency:.2f} s to reach the page"
    assert page.inner_text("#alarm-count") != before
    print(f"a new alarm reached the open alarms page in {latency:.2f} s")
    page.screenshot(path=str(SHOTS / "alarms-live-zh-CN-1440x900.png"), full_page=True)
    page.context.close()
