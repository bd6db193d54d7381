"""The kiosk's JSON API over a real service, RS485 driver on the simulator's pty and a broker.

These are the calls the page (and the demo) make; each test checks what the cabinet and the
simulated doors did, not only what the API answered.
"""

from __future__ import annotations

import asyncio
import os
import tty
from datetime import UTC, datetime, timedelta

import pytest

from cabinet.config import load_config
from cabinet.kiosk import start_kiosk
from cabinet.kiosk.app import build_app
from cabinet.kiosk.maintenance import Maintenance
from cabinet.kiosk.server import KioskServer
from firmware_sim import PtyServer, SimulatedBus
from protocol.hashing import code_hash, pin_hash
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.kiosk.harness import Api, KioskRunner, read_events, start_kiosk_for
from tests.cabinet.service.harness import (
    CHANNELS,
    CODE_KEY,
    COURIER,
    PHONE,
    PIN,
    FakeClock,
    ServiceRunner,
    put_code,
    put_courier,
)
from tests.cabinet.service.process import write_config
from tests.services import Mosquitto

Sim = tuple[SimulatedBus, PtyServer]


def pulses(sim: Sim, compartment: str) -> int:
    return sim[0].board(1).doors[CHANNELS[compartment]].pulses


async def status_says(kiosk: Api, key: str, value: object) -> bool:
    return (await kiosk.status())[key] == value


async def door_cycled(kiosk: Api) -> bool:
    return (await kiosk.status())["courier"]["door_cycled"]


async def test_a_courier_deposits_and_a_recipient_picks_up_through_the_api(
    kiosk: KioskRunner, sim: Sim, peer: CloudPeer
) -> None:
    bus = sim[0]
    events = await read_events(kiosk.url)
    try:
        assert await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN) == [
            {"type": "SignedIn", "courier_id": COURIER, "retrievals_due": 0}
        ]
        assert (await kiosk.status())["courier"]["step"] == "tracking"
        assert await kiosk.input("TrackingEntered", tracking_no=" sf1001 ") == [
            {"type": "TrackingAccepted", "tracking_no": "SF1001"}
        ]
        (accepted,) = await kiosk.input("PhoneEntered", phone=PHONE)
        assert accepted == {
            "type": "PhoneAccepted",
            "phone_masked": accepted["phone_masked"],
            "free_by_size": {"S": 1, "M": 1, "L": 1, "XL": 1},
        }
        assert PHONE not in accepted["phone_masked"]  # phones only ever masked on a screen
        assert await kiosk.input("SizeChosen", size="M") == [
            {"type": "DepositDoorOpening", "compartment": "A02", "size": "M"}
        ]
        await eventually(lambda: pulses(sim, "A02") == 1, 5, "door A02 pulsed")
        bus.person.put_parcel(1, CHANNELS["A02"])
        bus.person.close_door(1, CHANNELS["A02"])
        # Nobody asked for this one: the page hears it on the event stream.
        assert await events.next("screen") == {"type": "DepositDoorClosed", "compartment": "A02"}
        (deposited,) = await kiosk.input("Confirm")
        assert deposited["type"] == "Deposited" and deposited["compartment"] == "A02"
        assert await kiosk.input("CourierSignOut") == [
            {"type": "SignedOut", "courier_id": COURIER, "deposited": 1, "idle": False}
        ]
        assert (await kiosk.status())["free_by_size"] == {"S": 1, "M": 0, "L": 1, "XL": 1}

        await put_code(peer, deposited["parcel_id"], "A02", "31415926", "cmd-code-1")
        assert (await kiosk.post("/api/keypad-active")).status_code == 200
        assert await kiosk.input("CodeEntered", code="3141 5926") == [
            {
                "type": "DoorsOpening",
                "compartments": ["A02"],
                "unavailable": [],
                "after_others": False,
                "pickup": "1",
            }
        ]
        await eventually(lambda: pulses(sim, "A02") == 2, 5, "door A02 pulsed for the pickup")
        assert pulses(sim, "A01") == pulses(sim, "A03") == pulses(sim, "A04") == 0
        bus.person.take_parcel(1, CHANNELS["A02"])
        bus.person.close_door(1, CHANNELS["A02"])
        assert await events.next("screen") == {"type": "ParcelTaken", "compartment": "A02"}
    finally:
        await events.close()


BAD_BODIES = [
    ("not JSON", b"{type: CodeEntered", "not JSON"),
    ("not an object", b'["CodeEntered"]', "JSON object"),
    ("no type", b'{"code": "12345678"}', "unknown input type None"),
    ("unknown type", b'{"type": "OpenAllDoors"}', "unknown input type 'OpenAllDoors'"),
    ("a command, not a screen input", b'{"type": "CompartmentOpen"}', "unknown input type"),
    ("missing field", b'{"type": "CourierSignIn", "courier_id": "C1"}', "needs the field 'pin'"),
    ("extra field", b'{"type": "Confirm", "door": "A01"}', "takes no field 'door'"),
    ("not a string", b'{"type": "CodeEntered", "code": 12345678}', "must be a string"),
    ("bad size", b'{"type": "SizeChosen", "size": "XXL"}', "no size 'XXL'"),
    ("too long", b'{"type": "QrScanned", "payload": "' + b"x" * 300 + b'"}', "longer than"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_a_bad_body_is_422_and_changes_nothing(
    kiosk: KioskRunner, service: ServiceRunner, sim: Sim, case: str, body: bytes, fragment: str
) -> None:
    before = service.service.cabinet.to_dict()
    answer = await kiosk.http.post(
        "/api/input", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, case
    assert fragment in answer.json()["error"]
    assert service.service.cabinet.to_dict() == before
    assert all(pulses(sim, c) == 0 for c in CHANNELS)


async def test_an_input_the_flow_does_not_allow_now_is_409(kiosk: KioskRunner, sim: Sim) -> None:
    answer = await kiosk.post("/api/input", {"type": "Confirm"})
    assert answer.status_code == 409
    assert answer.json()["error"] == "Confirm: no courier is signed in"
    await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
    answer = await kiosk.post("/api/input", {"type": "CodeEntered", "code": "12345678"})
    assert answer.status_code == 409 and answer.json()["state"] == "courier"
    assert all(pulses(sim, c) == 0 for c in CHANNELS)


async def test_wrong_codes_count_down_then_lock_the_keypad(kiosk: KioskRunner, sim: Sim) -> None:
    assert await kiosk.input("CodeEntered", code="11111111") == [
        {"type": "WrongCode", "attempts_left": 2}
    ]
    assert await kiosk.input("CodeEntered", code="22222222") == [
        {"type": "WrongCode", "attempts_left": 1}
    ]
    assert await kiosk.input("CodeEntered", code="33333333") == [
        {"type": "KeypadLocked", "seconds_left": 30}
    ]
    assert (await kiosk.status())["keypad_locked_s"] == 30
    assert await kiosk.input("QrScanned", payload="LKR1:cab1:44444444") == [
        {"type": "KeypadLocked", "seconds_left": 30}
    ]
    assert all(pulses(sim, c) == 0 for c in CHANNELS)


async def test_status_tells_the_cabinet_the_link_and_the_courier(
    kiosk: KioskRunner, mosquitto: Mosquitto
) -> None:
    status = await kiosk.status()
    assert status["cabinet_id"] == "cab1"
    assert status["online"] is True
    assert status["free_by_size"] == {"S": 1, "M": 1, "L": 1, "XL": 1}
    assert status["courier_signed_in"] is False and status["courier"] is None
    assert status["language"] == "en" and status["code_digits"] == 8
    assert status["scan"] == {"available": False, "version": 0}
    await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
    assert (await kiosk.status())["courier"]["courier_id"] == COURIER
    events = await read_events(kiosk.url)
    try:
        mosquitto.stop()  # the cloud is unreachable: the page shows its offline badge
        await eventually(lambda: status_says(kiosk, "online", False), 10, "the link seen down")
        assert (await events.next("status", 5))["online"] is False
        # Deposits go on offline.
        screens = await kiosk.input("TrackingEntered", tracking_no="SF2001")
        assert screens[0]["type"] == "TrackingAccepted"
    finally:
        await events.close()


async def test_keypad_active_holds_the_bus_polls_until_the_code_is_checked(
    kiosk: KioskRunner, service: ServiceRunner
) -> None:
    def requests() -> int:
        return service.service.driver.health()["boards"]["1"]["requests"]

    await eventually(lambda: requests() > 5, 5, "polls running")
    assert (await kiosk.post("/api/keypad-active")).json() == {"ok": True}
    held = requests()
    await asyncio.sleep(0.3)  # a window in which ~15 polls would otherwise go out
    assert requests() <= held + 1  # one may have been in flight
    await kiosk.input("CodeEntered", code="12345678")
    await eventually(lambda: requests() > held + 3, 5, "polls resumed after the code was checked")


async def test_the_page_its_text_and_an_unavailable_scan(kiosk: KioskRunner) -> None:
    page = await kiosk.http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    texts = (await kiosk.http.get("/api/i18n")).json()
    assert texts["default"] == "en" and set(texts["languages"]) == {"zh-CN", "en"}
    scan = await kiosk.http.get("/api/scan-qr")
    assert scan.status_code == 503 and "scan unavailable" in scan.json()["error"]


async def test_an_idle_courier_is_signed_out_and_the_page_is_told(
    mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, tmp_path
) -> None:
    clock = FakeClock()
    runner = await ServiceRunner(
        mosquitto, sim[1].path, tmp_path / "journal.sqlite3", clock=clock, tick_s=0.02
    ).start()
    kiosk = None
    try:
        await runner.wait_online()
        await put_courier(peer)
        kiosk = await start_kiosk_for(runner)
        events = await read_events(kiosk.url)
        await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
        await kiosk.input("TrackingEntered", tracking_no="SF4001")
        clock.advance(181)  # the core's courier_idle_s is 180: the next tick signs them out
        assert await events.next("screen") == {
            "type": "SignedOut",
            "courier_id": COURIER,
            "deposited": 0,
            "idle": True,
        }
        assert (await kiosk.status())["courier_signed_in"] is False
        await events.close()
    finally:
        if kiosk is not None:
            await kiosk.close()
        await runner.close()


async def test_maintenance_needs_the_technician_pin_and_opens_only_empty_doors(
    service: ServiceRunner, sim: Sim
) -> None:
    clock = FakeClock()
    maintenance = Maintenance(pin_hash("97531", os.urandom(16)), clock=clock)
    kiosk = await start_kiosk_for(service, maintenance=maintenance)
    try:
        assert (await kiosk.http.get("/api/maintenance/status")).status_code == 401
        assert (
            await kiosk.post("/api/maintenance/open", {"compartment": "A01"})
        ).status_code == 401
        for left in (4, 3, 2, 1):
            answer = await kiosk.post("/api/maintenance/sign-in", {"pin": "00000"})
            assert answer.status_code == 403 and answer.json()["attempts_left"] == left
        # The fifth in a row:
        locked = await kiosk.post("/api/maintenance/sign-in", {"pin": "00000"})
        assert locked.status_code == 429 and locked.json()["seconds_left"] == 300
        still = await kiosk.post("/api/maintenance/sign-in", {"pin": "97531"})  # right, but locked
        assert still.status_code == 429
        clock.advance(300)
        token = (await kiosk.post("/api/maintenance/sign-in", {"pin": "97531"})).json()["token"]
        headers = {"X-Maintenance-Token": token}
        status = (await kiosk.http.get("/api/maintenance/status", headers=headers)).json()
        assert status["driver"]["boards"]["1"]["faulted"] is False
        assert [d["compartment"] for d in status["doors"]] == ["A01", "A02", "A03", "A04"]
        opened = await kiosk.post("/api/maintenance/open", {"compartment": "A04"}, headers=headers)
        assert opened.json() == {"ok": True, "compartment": "A04"}
        await eventually(lambda: pulses(sim, "A04") == 1, 5, "A04 unlocked for the test")
        # A door with a parcel behind it is the dashboard's to open (with a reason, audited).
        await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
        await kiosk.input("TrackingEntered", tracking_no="SF5001")
        await kiosk.input("PhoneEntered", phone=PHONE)
        await kiosk.input("SizeChosen", size="S")
        await eventually(lambda: pulses(sim, "A01") == 1, 5, "A01 unlocked for the deposit")
        sim[0].person.put_parcel(1, CHANNELS["A01"])
        sim[0].person.close_door(1, CHANNELS["A01"])
        await eventually(lambda: door_cycled(kiosk), 5, "the deposit door seen shut")
        await kiosk.input("Confirm")
        await kiosk.input("CourierSignOut")
        refused = await kiosk.post("/api/maintenance/open", {"compartment": "A01"}, headers=headers)
        assert refused.status_code == 409 and refused.json()["error"] == (
            "door A01 holds a parcel: use the operations console's remote open, with a reason"
        )
        unknown = await kiosk.post("/api/maintenance/open", {"compartment": "Z9"}, headers=headers)
        assert unknown.status_code == 422
        assert pulses(sim, "A01") == 1
        clock.advance(301)  # the session lapses unused
        assert (await kiosk.http.get("/api/maintenance/status", headers=headers)).status_code == 401
    finally:
        await kiosk.close()


async def test_a_serial_scanner_opens_the_door_and_the_page_hears_of_it(
    service: ServiceRunner, sim: Sim, peer: CloudPeer, mosquitto: Mosquitto, tmp_path
) -> None:
    controller, device = os.openpty()
    tty.setraw(device)
    config = load_config(
        write_config(
            tmp_path / "cab.toml",
            broker=mosquitto,
            serial_port=str(sim[1].path),
            journal=tmp_path / "unused.sqlite3",
            extra=f'scanner_port = "{os.ttyname(device)}"\nkiosk_language = "en"',
        )
    )
    # The daemon's own wiring (start_kiosk), on the test's service.
    running = await start_kiosk(config, service.service, port=0)
    events = await read_events(running.url)
    try:
        http = Api(running.url)
        await http.input("CourierSignIn", courier_id=COURIER, pin=PIN)
        await http.input("TrackingEntered", tracking_no="SF6001")
        await http.input("PhoneEntered", phone=PHONE)
        await http.input("SizeChosen", size="L")
        await eventually(lambda: pulses(sim, "A03") == 1, 5, "A03 unlocked for the deposit")
        sim[0].person.put_parcel(1, CHANNELS["A03"])
        sim[0].person.close_door(1, CHANNELS["A03"])
        assert (await events.next("screen"))["type"] == "DepositDoorClosed"
        (deposited,) = await http.input("Confirm")
        await http.input("CourierSignOut")
        await put_code(peer, deposited["parcel_id"], "A03", "27182818", "cmd-code-scan")
        assert await eventually(
            lambda: running.scanner.opened.is_set(), 5, "the scanner's port open"
        )
        os.write(controller, b"LKR1:cab1:27182818\r\n")
        assert await events.next("screen") == {
            "type": "DoorsOpening",
            "compartments": ["A03"],
            "unavailable": [],
            "after_others": False,
            "pickup": "1",
        }
        await eventually(lambda: pulses(sim, "A03") == 2, 5, "A03 unlocked for the scanned QR")
        await http.close()
    finally:
        await events.close()
        await running.stop()
        os.close(controller)
        os.close(device)


async def test_an_expired_parcel_says_so_and_opens_nothing(
    kiosk: KioskRunner, sim: Sim, peer: CloudPeer
) -> None:
    await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
    await kiosk.input("TrackingEntered", tracking_no="SF7001")
    await kiosk.input("PhoneEntered", phone=PHONE)
    await kiosk.input("SizeChosen", size="XL")
    await eventually(lambda: pulses(sim, "A04") == 1, 5, "A04 unlocked for the deposit")
    sim[0].person.put_parcel(1, CHANNELS["A04"])
    sim[0].person.close_door(1, CHANNELS["A04"])
    await eventually(lambda: door_cycled(kiosk), 5, "the door seen shut")
    (deposited,) = await kiosk.input("Confirm")
    await kiosk.input("CourierSignOut")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    entry = {
        "parcel_id": deposited["parcel_id"],
        "compartment": "A04",
        "code_hash": code_hash(CODE_KEY, "16180339"),
        "expires_at": past,
    }
    peer.command("cmd-expired", type="codes.put", data={"entries": [entry]})
    await eventually(lambda: peer.acks_for("cmd-expired"), 10, "the codes.put ack")
    assert await kiosk.input("CodeEntered", code="16180339") == [{"type": "CodeExpired"}]
    assert pulses(sim, "A04") == 1  # it stays shut: the courier takes it back


async def test_a_taken_kiosk_port_is_a_clear_error(service: ServiceRunner) -> None:
    kiosk = await start_kiosk_for(service)
    try:
        server = KioskServer(build_app(kiosk.kiosk), "127.0.0.1", kiosk.server.port)
        with pytest.raises(
            OSError, match=r"cannot serve the kiosk on 127\.0\.0\.1:\d+ .*kiosk_port"
        ):
            await server.start()
    finally:
        await kiosk.close()
