"""The removal queue's messages on the kiosk, at every locker screen size, in zh-CN and English.

Two recipients at one cabinet: the first one's door (A01) is unlocked but never seen to move
(its sensor is stuck "open"), so it holds the queue; the second one's code opens three doors,
which wait their turn behind it ("yours opens next"), then open one at a time ("door A02 is
opening now"), and, never seen to move either, lapse ("unlocked but not seen opening"). Each
message is checked at the four sizes of tests/cabinet/kiosk/test_screen_sizes.py, both
languages, and screenshotted to tests/artifacts/kiosk/queue/.

The daemon runs on a clock file (`LOCKER_CABINET_CLOCK_FILE`): its time stands still until the
test moves it, so the queue waits exactly as long as the test needs to look at each message,
and 3 s of `unlock_settle_s` or 60 s of `unlock_window_s` pass in one write, never in a sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.browser import (
    ARTIFACTS,
    FrozenClock,
    KioskDaemon,
    at_every_size,
    has_text,
    keys,
    launch_chromium,
    visible,
)
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PHONE,
    PIN,
    put_code_to_process,
    put_courier_to_process,
)
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.browser

Sim = tuple[SimulatedBus, PtyServer]
SHOTS = ARTIFACTS / "queue"
FIRST, SECOND = "11112222", "33334444"  # A01's recipient's code; the code of A02, A03 and A04


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


def pulses(sim: Sim, compartment: str) -> int:
    return sim[0].board(1).doors[CHANNELS[compartment]].pulses


def deposit(url: str, sim: Sim, size: str) -> tuple[str, str]:
    """A signed-in courier's parcel into a door of `size`, through the kiosk's API (before the
    page opens: only the recipients' screens are walked here): its door and parcel id."""

    def step(type_: str, **fields: Any) -> httpx.Response:
        return httpx.post(f"{url}/api/input", json={"type": type_, **fields}, timeout=10)

    for type_, fields in (
        ("TrackingEntered", {"tracking_no": f"SF-{size}"}),
        ("PhoneEntered", {"phone": PHONE}),
    ):
        answer = step(type_, **fields)
        assert answer.status_code == 200, answer.text
    (opening,) = step("SizeChosen", size=size).json()["screens"]
    door = opening["compartment"]
    wait_for(lambda: sim[0].board(1).doors[CHANNELS[door]].door_open, 5, f"{door} open")
    sim[0].person.put_parcel(1, CHANNELS[door])
    sim[0].person.close_door(1, CHANNELS[door])
    # Refused (409) until the daemon has seen the door shut on the parcel.
    confirmed = wait_for(
        lambda: (answer := step("Confirm")).status_code == 200 and answer, 5, f"{door} shut"
    )
    (deposited,) = confirmed.json()["screens"]
    return door, deposited["parcel_id"]


def tiles(page: Any) -> list[str]:
    """Each door tile of the pickup screen as it reads: "格口 A02 等待中"."""
    return [" ".join(t.split()) for t in page.locator("#opened-doors .door-tile").all_inner_texts()]


def in_both_languages(page: Any, name: str, zh: str, en: str) -> None:
    """The message in zh-CN, then in English, fits at every size; the page ends in zh-CN."""
    has_text(page, "#opened-msg", zh)
    at_every_size(page, SHOTS, f"{name}-zh")
    page.locator("#lang").click()
    has_text(page, "#opened-msg", en)
    at_every_size(page, SHOTS, f"{name}-en")
    page.locator("#lang").click()


def test_the_queue_s_messages_name_their_doors_at_every_size(
    tmp_path: Path, mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, browser: Any
) -> None:
    clock = FrozenClock(tmp_path / "clock")
    daemon = KioskDaemon(
        tmp_path,
        broker=mosquitto,
        serial_port=str(sim[1].link),
        env=clock.env,
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    try:
        put_courier_to_process(peer)
        answer = httpx.post(
            f"{daemon.url}/api/input",
            json={"type": "CourierSignIn", "courier_id": COURIER, "pin": PIN},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        doors = {size: deposit(daemon.url, sim, size) for size in ("S", "M", "L", "XL")}
        answer = httpx.post(f"{daemon.url}/api/input", json={"type": "CourierSignOut"}, timeout=10)
        assert answer.status_code == 200, answer.text
        first, *second = doors.values()
        put_code_to_process(peer, first[1], first[0], FIRST, "cmd-first")
        for door, parcel_id in second:  # one recipient, three parcels, one code
            put_code_to_process(peer, parcel_id, door, SECOND, f"cmd-{door}")
        # Every door's sensor sticks at "open": an unlock never shows as the door moving, so
        # each door holds the queue until `unlock_settle_s` has passed on the daemon's clock.
        for door, _ in doors.values():
            sim[0].faults.stick_sensor(1, CHANNELS[door], latched=False)
        a01, (a02, a03, a04) = first[0], [door for door, _ in second]

        page = context.new_page()
        page.goto(daemon.url)
        page.wait_for_selector("body[data-ready=true]")
        # The first recipient: their door is unlocked, and never seen opening.
        keys(page, '#s-home .keypad[data-field="code"]', FIRST)
        page.locator('#s-home .keypad [data-key="go"]').click()
        visible(page, "opened")
        wait_for(lambda: pulses(sim, a01) == 2, 5, f"{a01} pulsed for the pickup")
        page.locator('#s-opened [data-go="home"]').click()
        visible(page, "home")

        # The second recipient, a moment later: their three doors wait behind A01.
        keys(page, '#s-home .keypad[data-field="code"]', SECOND)
        page.locator('#s-home .keypad [data-key="go"]').click()
        visible(page, "opened")
        waiting = f"{a02}, {a03}, {a04}"
        in_both_languages(
            page,
            "01-doors-open-next",
            f"正在先打开另一个格口，您的格口（{a02}、{a03}、{a04}）随后依次打开",
            f"Another door is opening first. Yours ({waiting}) open next",
        )
        assert [pulses(sim, d) for d in (a02, a03, a04)] == [1, 1, 1]  # the deposits' only
        # No door of theirs reads "open" yet: the title says to wait, each tile says "waiting".
        has_text(page, "#opened-title", "请稍候，马上为您开门")
        assert tiles(page) == [f"格口 {d} 等待中" for d in (a02, a03, a04)]

        # unlock_settle_s (3 s) after A01's unlock: the first of them opens, and says so.
        clock.advance(3)
        wait_for(lambda: pulses(sim, a02) == 2, 5, f"{a02} pulsed")
        in_both_languages(
            page, "02-door-opening-now", f"{a02} 号格口正在打开", f"Door {a02} is opening now"
        )
        assert pulses(sim, a03) == 1  # still waiting: A02 holds the queue now
        has_text(page, "#opened-title", "柜门已打开")
        assert tiles(page) == [f"格口 {a02} 已打开", f"格口 {a03} 等待中", f"格口 {a04} 等待中"]
        clock.advance(3)
        wait_for(lambda: pulses(sim, a03) == 2, 5, f"{a03} pulsed")
        has_text(page, "#opened-msg", f"{a03} 号格口正在打开")
        clock.advance(3)
        wait_for(lambda: pulses(sim, a04) == 2, 5, f"{a04} pulsed")
        has_text(page, "#opened-msg", f"{a04} 号格口正在打开")

        # unlock_window_s (60 s) after A02's unlock: A02 lapses; the screen names it.
        clock.advance(54)
        has_text(page, "#opened-msg", f"{a02} 号格口已解锁，但未检测到开门")
        in_both_languages(
            page,
            "03-door-not-seen-open",
            f"{a02} 号格口已解锁，但未检测到开门",
            f"Door {a02} was unlocked but not seen opening",
        )
        # The message names the last door that lapsed; the tiles keep every door's state.
        assert tiles(page) == [
            f"格口 {a02} 未检测到开门",
            f"格口 {a03} 已打开",
            f"格口 {a04} 已打开",
        ]
    finally:
        context.close()
        daemon.close()
