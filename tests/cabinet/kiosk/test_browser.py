"""The kiosk page in Debian's headless Chromium, against the real daemon and the simulator.

Each test runs `locker cabinet run` (kiosk included) on the simulated lock board's pty and a
broker of its own, opens the page as the cabinet's Chromium would, and taps through it as a
person would: on-screen keys only, a USB scanner as fast keystrokes ending in Enter. What is
checked is what the simulator's doors did (unlock pulses), not only the page's text.
Screenshots of the main screens go to tests/artifacts/kiosk/ (gitignored), and the deposit
test writes what one parcel cost (taps, seconds) to tests/artifacts/kiosk/deposit.json.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from firmware_sim import PtyServer, SimulatedBus
from protocol.hashing import pin_hash
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.browser import (
    ARTIFACTS,
    VIEWPORT,
    KioskDaemon,
    Taps,
    launch_chromium,
    shot,
)
from tests.cabinet.kiosk.cloud import BASE_URL, CABINET_PASSWORD, CloudServer
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PIN,
    events_of,
    put_code_to_process,
    put_courier_to_process,
)
from tests.services import Mosquitto, free_port, wait_for

pytestmark = pytest.mark.browser

Sim = tuple[SimulatedBus, PtyServer]
PHONE = "13812345678"
TECH_PIN = "97531"
TAP_BUDGET = 14  # one parcel, tracking number scanned: phone 11 + next + size + confirm


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


# What the kiosk's guard answers a request that is not its page's own (cabinet/kiosk/guard.py).
GUARD_REFUSALS = {413, 415}


@pytest.fixture
def api_calls() -> list[tuple[str, int]]:
    """Every /api/ call the pages made: (method and path, status)."""
    return []


@pytest.fixture
def open_page(browser: Any, api_calls: list[tuple[str, int]]) -> Iterator[Any]:
    contexts: list[Any] = []

    def seen(response: Any) -> None:
        path = response.url.split("/", 3)[-1]
        if path.startswith("api/"):
            api_calls.append((f"{response.request.method} /{path}", response.status))

    def open_(url: str, *, clock: bool = False) -> Any:
        context = browser.new_context(viewport=VIEWPORT, has_touch=True)
        contexts.append(context)
        page = context.new_page()
        page.on("response", seen)
        if clock:
            page.clock.install()  # the test moves the page's time instead of waiting
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield open_
    for context in contexts:
        context.close()
    # The page's own calls pass the kiosk's Host, Origin and JSON checks (403 only for a PIN).
    refused = [
        (call, status)
        for call, status in api_calls
        if status in GUARD_REFUSALS or (status == 403 and "maintenance/sign-in" not in call)
    ]
    assert refused == []


def pulses(sim: Sim, compartment: str) -> int:
    return sim[0].board(1).doors[CHANNELS[compartment]].pulses


def visible(page: Any, screen: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(f"#s-{screen}")).to_be_visible(timeout=5000)


def text_of(page: Any, selector: str, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(re.compile(pattern), timeout=5000)


def sign_in(page: Any, courier_id: str = COURIER) -> None:
    """On the sign-in screen: the courier's id on the keyboard, the PIN on the keypad, Sign in."""
    for char in courier_id:
        page.locator(f'#signin-keys .keyboard [data-key="{char}"]').click()
    page.locator("#pin-display").click()
    for digit in PIN:
        page.locator(f'#signin-keys .keypad [data-key="{digit}"]').click()
    page.locator("#sign-in").click()
    visible(page, "courier-tracking")


def scan(page: Any, payload: str) -> None:
    """A USB scanner: the payload typed fast, then Enter (no field has focus)."""
    page.keyboard.type(payload)
    page.keyboard.press("Enter")


def deposit(page: Any, taps: Taps, sim: Sim, tracking_no: str, size: str, *, shots: bool) -> str:
    """One parcel through the screens; returns the door it went into."""
    scan(page, tracking_no)
    visible(page, "courier-phone")
    taps.digits("#s-courier-phone .keypad", PHONE)
    if shots:
        shot(page, "04-courier-phone-en")
    taps.tap('#s-courier-phone [data-key="go"]')
    visible(page, "courier-size")
    if shots:
        shot(page, "05-courier-size-en")
    taps.tap(f'.size[data-size="{size}"]')
    visible(page, "courier-door")
    door = page.locator("#door-number").inner_text().split()[-1]
    wait_for(lambda: pulses(sim, door) == 1, 5, f"door {door} unlocked")
    from playwright.sync_api import expect

    expect(page.locator("#confirm")).to_be_disabled()  # not before the door was seen shut
    if shots:
        shot(page, "06-courier-door-open-en")
    sim[0].person.put_parcel(1, CHANNELS[door])
    sim[0].person.close_door(1, CHANNELS[door])
    expect(page.locator("#confirm")).to_be_enabled(timeout=5000)
    if shots:
        shot(page, "07-courier-door-closed-en")
    taps.tap("#confirm")
    visible(page, "courier-tracking")
    text_of(page, "#tracking-msg", f"{tracking_no}.*{door}")
    return door


def test_a_courier_deposits_three_parcels_and_two_recipients_pick_up(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, open_page: Any
) -> None:
    cloud = CloudServer(tmp_path)
    daemon = KioskDaemon(
        tmp_path,
        broker=mosquitto,
        serial_port=str(sim[1].link),
        extra=f'cloud_api_url = "{cloud.url}"\nkiosk_language = "en"',
        mqtt_password=CABINET_PASSWORD,  # what the cloud asks of the kiosk for its scan QR
    )
    try:
        put_courier_to_process(peer)
        page = open_page(daemon.url)
        # The idle screen: the cloud's scan-to-open QR, refreshed by the daemon.
        from playwright.sync_api import expect

        expect(page.locator("#scan-img")).to_be_visible(timeout=10000)
        qr = httpx.get(f"{daemon.url}/api/scan-qr", timeout=5)
        assert qr.headers["X-Scan-URL"].startswith(f"{BASE_URL}/s/cab1/")
        expect(page.locator("#offline")).to_be_hidden()
        shot(page, "01-home-en")
        page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

        # The courier signs in with the on-screen keyboard and keypad.
        taps = Taps(page)
        taps.tap("#go-courier")
        visible(page, "courier-signin")
        taps.digits("#signin-keys .keyboard", COURIER)
        taps.tap("#pin-display")
        taps.digits("#signin-keys .keypad", PIN)
        shot(page, "02-courier-signin-en")
        taps.tap("#sign-in")
        visible(page, "courier-tracking")
        shot(page, "03-courier-tracking-en")
        sign_in_taps = taps.count

        # Three parcels, two sizes: S, then M twice (the second M gets the next size up).
        taps.restart()
        first = deposit(page, taps, sim, "SF1001", "S", shots=True)
        one_parcel = {"taps": taps.count, "seconds": round(taps.seconds, 2)}
        second = deposit(page, taps, sim, "SF1002", "M", shots=False)
        third = deposit(page, taps, sim, "SF1003", "M", shots=False)
        assert (first, second, third) == ("A01", "A02", "A03")
        assert one_parcel["taps"] == TAP_BUDGET
        text_of(page, "#courier-count", "3")
        taps.tap("#sign-out")
        visible(page, "home")
        text_of(page, "#home-msg", "Parcels deposited: 3")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "deposit.json").write_text(
            json.dumps(
                {
                    "one_parcel": one_parcel,
                    "sign_in_taps": sign_in_taps,
                    "three_parcels": {"taps": taps.count, "seconds": round(taps.seconds, 2)},
                    "note": "tracking number scanned; the person at the door is instant",
                },
                indent=2,
            )
        )
        wait_for(lambda: len(events_of(peer, "parcel.deposited")) == 3, 10, "three deposits")
        by_door = {e["data"]["compartment"]: e["data"] for e in events_of(peer, "parcel.deposited")}
        assert by_door["A03"]["size"] == "L" and by_door["A01"]["tracking_no"] == "SF1001"

        # The cloud sends the codes; one recipient types theirs, another shows the QR.
        put_code_to_process(peer, by_door["A01"]["parcel_id"], "A01", "11223344", "cmd-code-a01")
        put_code_to_process(peer, by_door["A02"]["parcel_id"], "A02", "55667788", "cmd-code-a02")
        taps.restart()
        taps.digits('#s-home .keypad[data-field="code"]', "11223344")
        taps.tap('#s-home .keypad [data-key="go"]')
        visible(page, "opened")
        text_of(page, "#opened-doors", "A01")
        wait_for(lambda: pulses(sim, "A01") == 2, 5, "A01 unlocked for its recipient")
        shot(page, "08-door-open-en")
        sim[0].person.take_parcel(1, CHANNELS["A01"])
        sim[0].person.close_door(1, CHANNELS["A01"])
        text_of(page, "#opened-msg", "Thank you")
        page.locator('#s-opened [data-go="home"]').click()
        visible(page, "home")

        scan(page, "LKR1:cab1:55667788")
        visible(page, "opened")
        text_of(page, "#opened-doors", "A02")
        wait_for(lambda: pulses(sim, "A02") == 2, 5, "A02 unlocked for the QR")
        assert pulses(sim, "A03") == 1 and pulses(sim, "A04") == 0  # nothing else opened
        sim[0].person.take_parcel(1, CHANNELS["A02"])
        sim[0].person.close_door(1, CHANNELS["A02"])
        wait_for(lambda: len(events_of(peer, "parcel.picked_up")) == 2, 10, "two pickups")
        methods = {
            e["data"]["compartment"]: e["data"]["method"]
            for e in events_of(peer, "parcel.picked_up")
        }
        assert methods == {"A01": "code", "A02": "qr"}

        # The cloud wants the third parcel back: the courier takes it out, door by door.
        parcel_id = by_door["A03"]["parcel_id"]
        peer.command("cmd-back", type="retrievals.put", data={"parcel_ids": [parcel_id]})
        wait_for(lambda: peer.acks_for("cmd-back"), 10, "the retrievals.put ack")
        page.locator("#go-courier").click()
        sign_in(page)
        text_of(page, "#retrieve", r"\(1\)")
        page.locator("#retrieve").click()
        visible(page, "courier-retrieve")
        wait_for(lambda: pulses(sim, "A03") == 2, 5, "A03 unlocked for the courier")
        shot(page, "15-courier-retrieve-en")
        sim[0].person.take_parcel(1, CHANNELS["A03"])
        sim[0].person.close_door(1, CHANNELS["A03"])
        expect(page.locator('#retrieve-list li[data-compartment="A03"]')).to_have_class(
            "done", timeout=5000
        )
        page.locator('#s-courier-retrieve [data-go="courier-tracking"]').click()
        page.locator("#sign-out").click()
        visible(page, "home")
        wait_for(lambda: events_of(peer, "parcel.retrieved"), 10, "parcel.retrieved")
        (retrieved,) = events_of(peer, "parcel.retrieved")
        assert retrieved["data"]["courier_id"] == COURIER
        assert retrieved["data"]["parcel_id"] == parcel_id
        assert page.evaluate("window.sameDocument") is True  # one page load for all of it
    finally:
        daemon.close()
        cloud.close()


def test_wrong_codes_lock_the_keypad_and_it_says_how_long_offline_too(
    tmp_path: Path, mosquitto: Mosquitto, sim: Sim, open_page: Any, api_calls: list[Any]
) -> None:
    # The broker named in the config is not there: the cloud is unreachable all along.
    dead = Mosquitto.__new__(Mosquitto)
    dead.host, dead.port = "127.0.0.1", free_port()
    daemon = KioskDaemon(
        tmp_path, broker=dead, serial_port=str(sim[1].link), extra='kiosk_language = "en"'
    )
    try:
        page = open_page(daemon.url)
        from playwright.sync_api import expect

        expect(page.locator("#offline")).to_be_visible()
        expect(page.locator("#scan-off")).to_be_visible()  # no cloud_api_url: scan unavailable
        keypad = '#s-home .keypad[data-field="code"]'
        for code, left in (("11111111", 2), ("22222222", 1)):
            for digit in code:
                page.locator(f'{keypad} [data-key="{digit}"]').click()
            page.locator(f'{keypad} [data-key="go"]').click()
            text_of(page, "#home-msg", f"Wrong code. {left} tries left")
        shot(page, "09-wrong-code-en")
        for digit in "33333333":
            page.locator(f'{keypad} [data-key="{digit}"]').click()
        page.locator(f'{keypad} [data-key="go"]').click()
        text_of(page, "#home-msg", r"locked for \d+ s")
        expect(page.locator(f'{keypad} [data-key="5"]')).to_be_disabled()
        shot(page, "10-keypad-locked-en")
        # A scanned QR is a code too, and the keypad is locked for it as well.
        scan(page, "LKR1:cab1:44444444")
        text_of(page, "#home-msg", "locked")
        assert daemon.status()["keypad_locked_s"] > 0
        assert all(pulses(sim, c) == 0 for c in CHANNELS)
        # Each code's first digit held the bus polls: the page's JSON POST was taken.
        holds = [status for call, status in api_calls if call == "POST /api/keypad-active"]
        assert holds and set(holds) == {200}
    finally:
        daemon.close()


def test_the_language_switch_and_the_idle_return_home(
    tmp_path: Path, mosquitto: Mosquitto, sim: Sim, open_page: Any
) -> None:
    daemon = KioskDaemon(tmp_path, broker=mosquitto, serial_port=str(sim[1].link))
    try:
        page = open_page(daemon.url, clock=True)
        from playwright.sync_api import expect

        # zh-CN by default (the config's default), English one tap away, on every screen.
        assert page.locator("html").get_attribute("lang") == "zh-CN"
        text_of(page, "#s-home h1", "^取件$")
        text_of(page, "#lang", "English")
        shot(page, "11-home-zh")
        page.locator("#lang").click()
        text_of(page, "#s-home h1", "^Pick up a parcel$")
        text_of(page, "#lang", "中文")
        for digit in "1234":
            page.locator(f'#s-home .keypad [data-key="{digit}"]').click()
        page.locator('#s-home .keypad [data-key="go"]').click()
        text_of(page, "#home-msg", "A pickup code has 8 digits")
        page.locator("#lang").click()  # the message on screen follows the switch
        text_of(page, "#home-msg", "取件码为 8 位数字")
        page.locator("#no-code").click()
        visible(page, "resend")
        text_of(page, "#s-resend h1", "重新获取取件码")
        shot(page, "12-resend-zh")
        page.locator("#lang").click()
        text_of(page, "#s-resend h1", "Get your code again")
        for digit in PHONE:
            page.locator(f'#s-resend .keypad [data-key="{digit}"]').click()
        page.locator("#resend-send").click()
        visible(page, "home")
        text_of(page, "#home-msg", "on its way again")
        page.locator("#lang").click()
        page.locator("#go-courier").click()
        visible(page, "courier-signin")
        text_of(page, "#s-courier-signin h1", "快递员登录")
        shot(page, "13-courier-signin-zh")
        page.locator("#lang").click()
        text_of(page, "#s-courier-signin h1", "Courier sign-in")
        # Nobody touches the screen for kiosk_idle_s (60 s): home, in the default language.
        page.clock.fast_forward(61_000)
        visible(page, "home")
        text_of(page, "#s-home h1", "^取件$")
        expect(page.locator("#lang")).to_have_text("English")
        assert all(pulses(sim, c) == 0 for c in CHANNELS)
    finally:
        daemon.close()


def test_maintenance_opens_an_empty_door_shows_the_bus_and_sends_a_full_one_to_the_console(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, open_page: Any
) -> None:
    hashed = pin_hash(TECH_PIN, os.urandom(16))
    daemon = KioskDaemon(
        tmp_path,
        broker=mosquitto,
        serial_port=str(sim[1].link),
        extra=f'technician_pin_hash = "{hashed}"\nkiosk_language = "en"',
    )
    try:
        put_courier_to_process(peer)
        page = open_page(daemon.url)
        # A courier leaves a parcel behind a door first: the technician may not open that one.
        taps = Taps(page)
        taps.tap("#go-courier")
        visible(page, "courier-signin")
        taps.digits("#signin-keys .keyboard", COURIER)
        taps.tap("#pin-display")
        taps.digits("#signin-keys .keypad", PIN)
        taps.tap("#sign-in")
        visible(page, "courier-tracking")
        full = deposit(page, taps, sim, "SF7001", "S", shots=False)
        taps.tap("#sign-out")
        visible(page, "home")
        page.locator("#go-maintenance").click()
        visible(page, "maint-signin")
        for digit in "11111":
            page.locator(f'#s-maint-signin .keypad [data-key="{digit}"]').click()
        page.locator('#s-maint-signin .keypad [data-key="go"]').click()
        text_of(page, "#maint-signin-msg", "Wrong PIN. 4 tries left")
        for digit in TECH_PIN:
            page.locator(f'#s-maint-signin .keypad [data-key="{digit}"]').click()
        page.locator("#maint-sign-in").click()
        visible(page, "maint")
        text_of(page, "#maint-bus", "Requests")
        page.locator('#maint-doors [data-compartment="A04"]').click()
        text_of(page, "#maint-msg", "Door A04 unlocked for a test")
        wait_for(lambda: pulses(sim, "A04") == 1, 5, "A04 unlocked for the technician")
        text_of(page, '#maint-doors [data-compartment="A04"]', "open")
        shot(page, "14-maintenance-en")
        page.locator(f'#maint-doors [data-compartment="{full}"]').click()
        text_of(
            page,
            "#maint-msg",
            f"Door {full} holds a parcel.*Use the operations console's remote open, with a reason",
        )
        page.locator("#lang").click()  # the technician reads Chinese
        page.locator(f'#maint-doors [data-compartment="{full}"]').click()
        text_of(page, "#maint-msg", f"{full} 号格口内有包裹.*运营管理后台.*远程开门.*原因")
        text_of(page, f'#maint-doors [data-compartment="{full}"]', "小")
        text_of(page, "#maint-bus", "请求数")
        shot(page, "15-maintenance-full-door-zh")
        assert pulses(sim, full) == 1  # the deposit's unlock only
        others = [c for c in CHANNELS if c not in (full, "A04")]
        assert all(pulses(sim, c) == 0 for c in others)
    finally:
        daemon.close()
