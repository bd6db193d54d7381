"""The courier's deposit of an announced parcel on the kiosk page, in headless Chromium, against
the real daemon and the simulated board: the cloud reserves a door, the courier scans the
tracking number, checks the masked phone and size, and one tap opens the held door.

The taps of one announced parcel and of one unannounced parcel (both scanned) are counted and
written to tests/artifacts/kiosk/deposit-announced.json.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocol.hashing import pin_hash
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.kiosk.browser import ARTIFACTS, KioskDaemon, Taps, shot
from tests.cabinet.kiosk.test_browser import (  # noqa: F401  (browser, open_page: fixtures)
    PHONE,
    Sim,
    api_calls,
    browser,
    deposit,
    open_page,
    pulses,
    scan,
    sign_in,
    text_of,
    visible,
)
from tests.cabinet.service.harness import CHANNELS, PIN, events_of
from tests.services import Mosquitto, wait_for

pytestmark = pytest.mark.browser

ANNOUNCED_BUDGET = 4  # the target for an announced parcel
UNANNOUNCED_BUDGET = 18  # and for one typed in by hand (phone, size)


def _command(peer: CloudPeer, command_id: str, type_: str, data: dict[str, Any]) -> None:
    peer.command(command_id, type=type_, data=data)
    wait_for(lambda: peer.acks_for(command_id), 10, f"the {type_} ack")
    assert peer.acks_for(command_id)[0]["ok"] is True, peer.acks_for(command_id)


def _sign_in(page: Any, courier_id: str) -> None:
    page.locator("#go-courier").click()
    visible(page, "courier-signin")
    sign_in(page, courier_id)


def test_an_announced_parcel_goes_in_with_two_taps_and_another_carrier_is_refused(
    tmp_path: Path,
    mosquitto: Mosquitto,
    peer: CloudPeer,
    sim: Sim,
    open_page: Any,  # noqa: F811
) -> None:
    daemon = KioskDaemon(
        tmp_path, broker=mosquitto, serial_port=str(sim[1].link), extra='kiosk_language = "en"'
    )
    try:
        couriers = [
            {"courier_id": cid, "pin_hash": pin_hash(PIN, os.urandom(16)), "carrier_id": carrier}
            for cid, carrier in (("SF1", "sf-express"), ("ZT1", "zto"))
        ]
        _command(peer, "c-couriers", "couriers.put", {"couriers": couriers})
        until = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        for n in (1, 2):
            reserve = {
                "parcel_id": f"SHIP{n}",
                "size": "M",
                "until": until,
                "phone": "+86" + PHONE,
                "tracking_no": f"SF900{n}",
                "carrier_id": "sf-express",
            }
            _command(peer, f"c-reserve-{n}", "compartments.reserve", reserve)
        page = open_page(daemon.url)
        _sign_in(page, "SF1")

        # The announced parcel: scanned, checked, one tap to open, one to confirm.
        taps = Taps(page)
        scan(page, "SF9001")
        visible(page, "courier-reserved")
        text_of(page, "#reserved-msg", r"SF9001.*138\*\*\*\*5678.*size M")
        shot(page, "16-courier-reserved-en")
        taps.tap("#open-reserved")
        visible(page, "courier-door")
        wait_for(lambda: pulses(sim, "A02") == 1, 5, "the held door A02 unlocked")
        sim[0].person.put_parcel(1, CHANNELS["A02"])
        sim[0].person.close_door(1, CHANNELS["A02"])
        from playwright.sync_api import expect

        expect(page.locator("#confirm")).to_be_enabled(timeout=5000)
        taps.tap("#confirm")
        visible(page, "courier-tracking")
        text_of(page, "#tracking-msg", "SF9001.*A02")
        announced = {"taps": taps.count, "seconds": round(taps.seconds, 2)}
        assert announced["taps"] <= ANNOUNCED_BUDGET

        # An unannounced M parcel: SHIP2 holds the next door that fits (the L, A03): it gets XL.
        taps.restart()
        assert deposit(page, taps, sim, "SF1234", "M", shots=False) == "A04"
        unannounced = {"taps": taps.count, "seconds": round(taps.seconds, 2)}
        assert unannounced["taps"] <= UNANNOUNCED_BUDGET

        wait_for(lambda: len(events_of(peer, "parcel.deposited")) == 2, 10, "two deposits")
        first = events_of(peer, "parcel.deposited")[0]["data"]
        assert (first["parcel_id"], first["compartment"], first["phone"]) == (
            "SHIP1",
            "A02",
            "+86" + PHONE,
        )

        # A courier of another company scans SHIP2's number: refused, with the cause.
        page.locator("#sign-out").click()
        visible(page, "home")
        _sign_in(page, "ZT1")
        scan(page, "SF9002")
        text_of(page, "#tracking-msg", "announced for another courier company")
        page.locator("#lang").click()
        text_of(page, "#tracking-msg", "其他快递公司")
        shot(page, "17-courier-reserved-refused-zh")
        assert pulses(sim, "A03") == 0  # SHIP2's held door stayed shut
        assert daemon.status()["free_by_size"] == {"S": 1, "M": 0, "L": 0, "XL": 0}

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "deposit-announced.json").write_text(
            json.dumps(
                {
                    "announced_parcel": announced,
                    "unannounced_parcel": unannounced,
                    "note": "tracking number scanned; counted from the scan to the confirm",
                },
                indent=2,
            )
        )
    finally:
        daemon.close()
