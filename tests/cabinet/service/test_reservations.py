"""Door reservations through the service: commands over a real Mosquitto, acks, a restart on the
same journal, the announced deposit on the simulated board, and the lapse on the injected clock."""

from __future__ import annotations

import os
from datetime import timedelta

from cabinet.core.compartments import Door
from cabinet.core.inputs import Confirm, CourierSignIn, OpenReserved, Tick, TrackingEntered
from cabinet.core.screens import DepositDoorOpening, Deposited, ReservationFound
from cabinet.kiosk.app import Kiosk
from firmware_sim import PtyServer, SimulatedBus
from protocol.hashing import pin_hash
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PIN,
    FakeClock,
    ServiceFactory,
    events_of,
)

Sim = tuple[SimulatedBus, PtyServer]


def _stamp(at) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def _command(peer: CloudPeer, command_id: str, type_: str, data: dict) -> dict:
    peer.command(command_id, type=type_, data=data)
    await eventually(lambda: peer.acks_for(command_id), 10, f"the {type_} ack")
    return peer.acks_for(command_id)[0]


async def test_a_reservation_survives_a_restart_and_its_parcel_goes_in_under_its_id(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    clock = FakeClock()
    runner = await service_factory(clock=clock)
    await runner.wait_online()
    courier = {"courier_id": COURIER, "pin_hash": pin_hash(PIN, os.urandom(16)), "carrier_id": "sf"}
    ack = await _command(peer, "c-couriers", "couriers.put", {"couriers": [courier]})
    assert ack["ok"] is True
    until = _stamp(clock.now + timedelta(hours=24))
    reserve = {"size": "L", "until": until, "phone": "+8613812345678", "carrier_id": "sf"}
    ack = await _command(
        peer,
        "c-r1",
        "compartments.reserve",
        {"parcel_id": "SHIP1", "tracking_no": "SF1", **reserve},
    )
    assert ack == {"v": 1, "cmd": "c-r1", "ok": True}
    ack = await _command(
        peer,
        "c-r2",
        "compartments.reserve",
        {"parcel_id": "SHIP2", "tracking_no": "SF2", **reserve},
    )
    assert ack["ok"] is True  # the XL door: the next larger
    ack = await _command(
        peer,
        "c-r3",
        "compartments.reserve",
        {"parcel_id": "SHIP3", "tracking_no": "SF3", **reserve},
    )
    assert ack["ok"] is False and "no free door of size L or larger" in ack["error"]
    await runner.close()

    # The daemon restarts on the same journal: the doors are still held.
    runner = await service_factory(clock=clock)
    await runner.wait_online()
    held = runner.service.cabinet.reservations
    assert {p: r.compartment for p, r in held.items()} == {"SHIP1": "A03", "SHIP2": "A04"}

    await runner.submit(CourierSignIn(COURIER, PIN))
    (found,) = await runner.submit(TrackingEntered("SF1"))
    assert isinstance(found, ReservationFound) and found.phone_masked.endswith("****5678")
    # A kiosk page that reloads now is told what to show again.
    courier = Kiosk(runner.service).status()["courier"]
    assert courier["step"] == "reserved"
    assert courier["reserved"] == {
        "type": "ReservationFound",
        "tracking_no": "SF1",
        "phone_masked": found.phone_masked,
        "size": "L",
    }
    (opening,) = await runner.submit(OpenReserved())
    assert opening == DepositDoorOpening("A03", opening.size)
    channel = CHANNELS["A03"]
    await runner.wait_door("A03", Door.OPEN)
    bus.person.put_parcel(1, channel)
    bus.person.close_door(1, channel)
    await eventually(
        lambda: (s := runner.service.cabinet.session) is not None and s.draft.door_cycled,
        5,
        "the deposit door seen shut",
    )
    (done,) = await runner.submit(Confirm())
    assert isinstance(done, Deposited) and done.parcel_id == "SHIP1"
    await eventually(lambda: events_of(peer, "parcel.deposited"), 10, "the deposit event")
    (event,) = events_of(peer, "parcel.deposited")
    assert event["data"]["parcel_id"] == "SHIP1"
    assert event["data"]["phone"] == "+8613812345678"

    # The other reservation lapses on the cabinet's clock.
    clock.advance(24 * 3600)
    await runner.submit(Tick())
    assert runner.service.cabinet.reservations == {}
