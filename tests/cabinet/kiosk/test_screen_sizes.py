"""The kiosk at every size a real locker screen has, in headless Chromium, against the daemon.

One daemon and one page walk every screen (home, no code?, courier sign-in, tracking number,
phone, size, the open door, the door shut, a phone-opened door, maintenance); at each screen
the viewport takes each size in turn: a 5" 800x480, a 7" 1024x600, a 15.6" 1280x800 and a
portrait 1080x1920. At every size every button on screen must lie inside the viewport, be at
least 48 px each way and not be covered by anything, and every message must be whole and in
view: the screen must fit without scrolling. Screenshots go to tests/artifacts/kiosk/sizes/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_sim import PtyServer, SimulatedBus
from protocol.hashing import pin_hash
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.browser import (
    ARTIFACTS,
    FrozenClock,
    KioskDaemon,
    has_text,
    keys,
    launch_chromium,
    visible,
)
from tests.cabinet.kiosk.browser import at_every_size as fits_at_every_size
from tests.cabinet.service.harness import CHANNELS, events_of, put_code_to_process
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.browser

Sim = tuple[SimulatedBus, PtyServer]
SHOTS = ARTIFACTS / "sizes"
COURIER_ID, COURIER_PIN = "sf-001", "135790"  # as the registry spells it: lower case
TECH_PIN = "97531"
PHONE = "13812345678"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def at_every_size(page: Any, name: str) -> None:
    fits_at_every_size(page, SHOTS, name)


def pulses(sim: Sim, compartment: str) -> int:
    return sim[0].board(1).doors[CHANNELS[compartment]].pulses


def test_every_screen_fits_every_locker_screen_size(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, browser: Any
) -> None:
    hashed = pin_hash(TECH_PIN, os.urandom(16))
    clock = FrozenClock(tmp_path / "clock")
    daemon = KioskDaemon(
        tmp_path,
        broker=mosquitto,
        serial_port=str(sim[1].link),
        extra=(
            f'technician_pin_hash = "{hashed}"\n'
            'cabinet_name = "滨江花园1号楼"\ncabinet_name_en = "Riverside Gardens, Building 1"'
        ),
        env=clock.env,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    flows: dict[str, dict[str, float]] = {}
    try:
        entry = {"courier_id": COURIER_ID, "pin_hash": pin_hash(COURIER_PIN, os.urandom(16))}
        peer.command("cmd-couriers", type="couriers.put", data={"couriers": [entry]})
        wait_for(lambda: peer.acks_for("cmd-couriers"), 10, "the couriers.put ack")
        page = context.new_page()
        page.goto(daemon.url)
        page.wait_for_selector("body[data-ready=true]")
        # The header names the cabinet in the screen's language, not its id.
        has_text(page, "#cabinet-id", "滨江花园1号楼")

        # Home, zh-CN, with a message: a code of the wrong length.
        keys(page, '#s-home .keypad[data-field="code"]', "1234")
        page.locator('#s-home .keypad [data-key="go"]').click()
        has_text(page, "#home-msg", "取件码为 8 位数字")
        at_every_size(page, "01-home-zh")

        # "No code?" twice for one number, 83 s apart on the daemon's clock: the second says to
        # wait the rest of the 10 minutes, to the second.
        started, taps = time.monotonic(), 0
        for asked in range(2):
            page.locator("#no-code").click()
            visible(page, "resend")
            taps += 1 + keys(page, '#s-resend .keypad[data-field="resend"]', PHONE)
            if asked:
                clock.advance(83)
            page.locator("#resend-send").click()
            taps += 1
        has_text(page, "#resend-msg", "该号码刚刚申请过，请 8 分 37 秒 后再试。")
        flows["resend twice"] = {"taps": taps, "seconds": round(time.monotonic() - started, 2)}
        at_every_size(page, "02-resend-too-soon-zh")
        page.locator('#s-resend [data-go="home"]').click()

        # The courier: a wrong id names itself; the registry's `sf-001` typed in capitals works.
        page.locator("#lang").click()
        page.locator("#go-courier").click()
        visible(page, "courier-signin")
        keys(page, "#signin-keys .keyboard", "SF-002")
        page.locator("#pin-display").click()
        keys(page, "#signin-keys .keypad", COURIER_PIN)
        page.locator("#sign-in").click()
        has_text(page, "#signin-msg", "No courier SF-002 at this cabinet")
        at_every_size(page, "03-courier-unknown-en")
        started, taps = time.monotonic(), 0
        page.locator("#courier-id-display").click()
        taps += 1
        for _ in range(6):
            page.locator('#signin-keys .keyboard [data-key="del"]').click()
        taps += 6 + keys(page, "#signin-keys .keyboard", "SF-001")
        page.locator("#pin-display").click()
        taps += 1 + keys(page, "#signin-keys .keypad", COURIER_PIN)
        page.locator("#sign-in").click()
        taps += 1
        visible(page, "courier-tracking")
        has_text(page, "#courier-who", "sf-001")
        flows["courier sign-in (after a wrong id)"] = {
            "taps": taps,
            "seconds": round(time.monotonic() - started, 2),
        }
        at_every_size(page, "04-courier-tracking-en")

        # One parcel, tracking number typed on the keyboard.
        started, taps = time.monotonic(), 0
        taps += keys(page, '#s-courier-tracking .keyboard[data-field="tracking"]', "SF1001")
        page.locator('#s-courier-tracking [data-key="go"]').click()
        taps += 1
        visible(page, "courier-phone")
        taps += keys(page, '#s-courier-phone .keypad[data-field="phone"]', PHONE)
        at_every_size(page, "05-courier-phone-en")
        page.locator('#s-courier-phone [data-key="go"]').click()
        taps += 1
        visible(page, "courier-size")
        at_every_size(page, "06-courier-size-en")
        page.locator('.size[data-size="S"]').click()
        taps += 1
        visible(page, "courier-door")
        wait_for(lambda: pulses(sim, "A01") == 1, 5, "A01 unlocked")
        from playwright.sync_api import expect

        # The door stands open: "open again" is off, and "bigger door" says to shut it first.
        expect(page.locator("#reopen")).to_be_disabled(timeout=5000)
        has_text(page, "#door-open-hint", "Close door A01 first")
        page.locator("#larger").click()
        has_text(page, "#door-msg", "Close door A01 first")
        at_every_size(page, "07-courier-door-open-en")
        sim[0].person.put_parcel(1, CHANNELS["A01"])
        sim[0].person.close_door(1, CHANNELS["A01"])
        expect(page.locator("#confirm")).to_be_enabled(timeout=5000)
        expect(page.locator("#reopen")).to_be_enabled()
        at_every_size(page, "08-courier-door-closed-en")
        page.locator("#confirm").click()
        taps += 1
        visible(page, "courier-tracking")
        flows["one parcel, tracking typed (6 chars)"] = {
            "taps": taps,
            "seconds": round(time.monotonic() - started, 2),
        }
        page.locator("#sign-out").click()
        visible(page, "home")

        # The recipient opens the door from their phone: the screen says the door stands open.
        wait_for(lambda: events_of(peer, "parcel.deposited"), 10, "the deposit event")
        (deposited,) = events_of(peer, "parcel.deposited")
        put_code_to_process(peer, deposited["data"]["parcel_id"], "A01", "11223344", "cmd-code")
        page.locator("#lang").click()  # back to zh-CN, as the recipient would see it
        peer.command(
            "cmd-open",
            type="compartment.open",
            data={"compartment": "A01", "reason": "scan-to-open", "actor": "recipient"},
        )
        has_text(page, "#remote-open", "A01 号格口门已打开，取件后请关门")
        at_every_size(page, "09-home-remote-open-zh")
        sim[0].person.take_parcel(1, CHANNELS["A01"])
        sim[0].person.close_door(1, CHANNELS["A01"])
        expect(page.locator("#remote-open")).to_be_hidden(timeout=5000)

        # The technician's screen: door states and counters in the screen's language.
        page.locator("#go-maintenance").click()
        keys(page, "#s-maint-signin .keypad", TECH_PIN)
        page.locator("#maint-sign-in").click()
        visible(page, "maint")
        has_text(page, '#maint-doors [data-compartment="A02"]', "中 · 空闲 · 门关")
        has_text(page, "#maint-bus", "校验错误")
        at_every_size(page, "10-maintenance-zh")
    finally:
        context.close()
        daemon.close()
    (SHOTS / "flows.txt").write_text(
        "".join(f"{name}: {v['taps']} taps, {v['seconds']} s\n" for name, v in flows.items())
    )
