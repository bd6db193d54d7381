"""The recipient's phone pages in headless Chromium: scan-to-open and a notice's pickup page.

As a recipient with a phone at 390x844 and 360x740 would: inside WeChat's browser (its user
agent, a Chinese phone), the QR's page comes in Chinese, a wrong SMS code is a sentence, the
right one lists the parcel without internal ids, one tap opens the door and says so in green;
the notice's page then shows door, deadline, code and QR and opens with one tap, since this
phone has proved itself here. English is one tap away and re-says what is on screen. No page
sets a cookie, and nothing is wider than the phone. Screenshots: tests/artifacts/phone/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from cloud.core.codes import pickup_link
from cloud.db.engine import make_engine
from cloud.db.models import CommandOutbox, NoticeOutbox
from cloud.db.sealing import unseal
from tests.cabinet.kiosk.browser import launch_chromium
from tests.cabinet.kiosk.cloud import CABINET_PASSWORD, CloudServer
from tests.cabinet.service.process import ROOT
from tests.cloud.api.conftest import deposit
from tests.cloud.db.builders import CAB, SEAL_KEY
from tests.services import wait_for

pytestmark = pytest.mark.browser

SHOTS = ROOT / "tests" / "artifacts" / "phone"
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI "
    "Language/zh_CN"
)
PHONES = {"390x844": (390, 844), "360x740": (360, 740)}
TYPED_PHONE = "13812341234"
GREEN, RED = "rgb(11, 107, 46)", "rgb(170, 17, 17)"

# Anything wider than the phone, and any control under 44 px high.
_FIT_JS = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > innerWidth) problems.push("wider than the screen");
  for (const el of document.querySelectorAll("button, a.go, input")) {
    if (el.offsetParent === null) continue;
    const r = el.getBoundingClientRect();
    if (r.height < 44) problems.push(`${el.id || el.textContent}: ${r.height} px high`);
    if (r.right > innerWidth + 0.5) problems.push(`${el.id || el.textContent}: off the right`);
  }
  return problems;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def at_phone_sizes(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in PHONES.items():
        page.set_viewport_size({"width": width, "height": height})
        assert page.evaluate(_FIT_JS) == [], (name, size)
        page.screenshot(path=str(SHOTS / f"{name}-{size}.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})


def texted_otp(engine: Any, language: str) -> str:
    """The one-time code the outbox holds for the SMS (the dispatcher would send it), which
    is to be written in the language the page was read in."""
    with Session(engine) as session:
        row = session.exec(
            select(NoticeOutbox)
            .where(NoticeOutbox.kind == "scan_otp")
            .order_by(col(NoticeOutbox.id).desc())
        ).first()
        assert row is not None and row.code_sealed
        assert row.language == language
        return unseal(SEAL_KEY, row.code_sealed, context=row.dedupe_key)


def opens(engine: Any) -> list[str]:
    with Session(engine) as session:
        rows = session.exec(
            select(CommandOutbox).where(CommandOutbox.type == "compartment.open")
        ).all()
        return [row.data["compartment"] for row in rows]


def test_a_recipient_in_wechat_opens_the_door_from_the_qr_page_and_the_notice_page(
    tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    server = CloudServer(tmp_path, CAB)
    engine = make_engine(f"sqlite:///{tmp_path / 'cloud.db'}")
    flows: dict[str, str] = {}
    try:
        (pickup_code,) = deposit(engine)
        qr = httpx.get(f"{server.url}/api/v1/cabinets/{CAB}/scan-qr", auth=(CAB, CABINET_PASSWORD))
        path = qr.headers["X-Scan-URL"].split("/", 3)[-1]
        context = browser.new_context(
            viewport={"width": 390, "height": 844},
            user_agent=WECHAT_UA,
            locale="zh-CN",
            has_touch=True,
        )
        page = context.new_page()
        page.goto(f"{server.url}/{path}")
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        expect(page.locator("h1")).to_have_text("扫码开门")
        expect(page.locator("#wechat")).to_be_visible()  # WeChat's browser: its sign-in too
        at_phone_sizes(page, "01-scan-zh")

        started, taps = time.monotonic(), 0
        page.locator("#phone").fill(TYPED_PHONE)
        page.locator("#ask button").click()
        taps += 2  # the number field (typed), the button
        expect(page.locator("#msg")).to_contain_text("138****1234")
        expect(page.locator("#msg")).to_contain_text("验证码已发出")
        assert TYPED_PHONE not in page.inner_text("body")  # masked on screen too

        page.locator("#code").fill("000000")
        page.locator("#check button").click()
        expect(page.locator("#msg")).to_have_text(
            "验证码不对或已过期，请核对短信，或重新获取验证码。"
        )
        assert page.eval_on_selector("#msg", "el => getComputedStyle(el).color") == RED
        at_phone_sizes(page, "02-scan-wrong-code-zh")

        page.locator("#code").fill(texted_otp(engine, "zh-CN"))
        page.locator("#check button").click()
        taps += 2
        door = page.locator('#parcels button[data-door="A01"]')
        expect(door).to_have_text("打开 A01 号格口")
        at_phone_sizes(page, "03-scan-parcels-zh")
        door.click()
        taps += 1
        expect(page.locator("#msg")).to_have_text("A01 号格口门已打开，取件后请关门。")
        assert page.eval_on_selector("#msg", "el => getComputedStyle(el).color") == GREEN
        expect(door).to_be_disabled()
        expect(door).to_have_text("A01 号格口已打开")
        flows["scan-to-open, SMS code (taps incl. 2 fields)"] = (
            f"{taps} taps, {time.monotonic() - started:.2f} s"
        )
        wait_for(lambda: opens(engine) == ["A01"], 5, "the compartment.open command")
        body = page.inner_text("body")
        assert "P000001" not in body and "parcel_id" not in body  # no internal ids
        at_phone_sizes(page, "04-scan-opened-zh")

        # English on a tap: the message on screen is said again in English.
        page.locator("#lang").click()
        expect(page.locator("h1")).to_have_text("Open your door")
        expect(page.locator("#msg")).to_have_text(
            "Door A01 is open. Close it after taking your parcel."
        )
        at_phone_sizes(page, "05-scan-opened-en")
        page.locator("#lang").click()

        # The notice's link: door, deadline, code and QR, and one tap opens (proved just now).
        deadline = datetime.now(UTC) + timedelta(days=2)
        link = pickup_link(server.url, CAB, pickup_code, compartment="A01", deadline=deadline)
        page.goto(link)
        page.wait_for_selector("#qr svg", timeout=10_000)
        expect(page.locator("#door")).to_have_text("A01")
        expect(page.locator("#code")).to_have_text(pickup_code)
        expect(page.locator("#deadline")).to_contain_text("请于")
        expect(page.locator("#where-name")).to_have_text("Gate 1")
        open_button = page.locator("#open")
        expect(open_button).to_have_text("打开 A01 号格口")
        at_phone_sizes(page, "06-pickup-zh")
        started = time.monotonic()
        open_button.click()
        expect(page.locator("#msg")).to_have_text("A01 号格口门已打开，取件后请关门。")
        flows["notice page, with a scan session"] = f"1 tap, {time.monotonic() - started:.2f} s"
        wait_for(lambda: opens(engine) == ["A01", "A01"], 5, "the second open command")
        at_phone_sizes(page, "07-pickup-opened-zh")
        assert context.cookies() == []  # no cookie anywhere: WeChat's browser may drop them
        context.close()

        # Another phone, English, not in WeChat: no WeChat sign-in; the notice page says how
        # to open from the phone (no session here) instead of a button.
        context = browser.new_context(viewport={"width": 360, "height": 740}, locale="en-GB")
        page = context.new_page()
        page.goto(f"{server.url}/{path}")
        expect(page.locator("h1")).to_have_text("Open your door")
        expect(page.locator("#wechat")).to_be_hidden()
        page.goto(link)
        page.wait_for_selector("#qr svg", timeout=10_000)
        expect(page.locator("#open")).to_be_hidden()
        expect(page.locator("#remote")).to_contain_text("Scan the QR on its screen")
        expect(page.locator("#deadline")).to_contain_text("Collect by")
        at_phone_sizes(page, "08-pickup-en")
        context.close()
    finally:
        server.close()
        engine.dispose()
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "flows.txt").write_text("".join(f"{k}: {v}\n" for k, v in flows.items()))
