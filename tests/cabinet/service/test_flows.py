"""Deposit and pickup through the service, against the simulated board and a real Mosquitto."""

from __future__ import annotations

from cabinet.core.compartments import Door
from cabinet.core.inputs import (
    CodeEntered,
    Confirm,
    CourierSignIn,
    CourierSignOut,
    PhoneEntered,
    SizeChosen,
    TrackingEntered,
)
from cabinet.core.screens import (
    DepositDoorClosed,
    DepositDoorOpening,
    Deposited,
    DoorsOpening,
    ParcelTaken,
    SignedIn,
)
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PHONE,
    PIN,
    ServiceFactory,
    ServiceRunner,
    events_of,
    put_code,
    put_courier,
)
from tests.services import Mosquitto

Sim = tuple[SimulatedBus, PtyServer]


async def deposit(
    runner: ServiceRunner, bus: SimulatedBus, tracking_no: str, size: str
) -> Deposited:
    """A signed-in courier deposits one parcel: the door pops, the parcel goes in, it shuts."""
    assert await runner.submit(TrackingEntered(tracking_no))
    assert await runner.submit(PhoneEntered(PHONE))
    (opening,) = await runner.submit(SizeChosen(size))
    assert isinstance(opening, DepositDoorOpening), opening
    channel = CHANNELS[opening.compartment]
    assert bus.board(1).doors[channel].pulses >= 1  # the unlock frame reached the board
    await runner.wait_door(opening.compartment, Door.OPEN)
    bus.person.put_parcel(1, channel)
    bus.person.close_door(1, channel)
    await eventually(
        lambda: (s := runner.service.cabinet.session) is not None and s.draft.door_cycled,
        5,
        "the deposit door seen shut",
    )
    (done,) = await runner.submit(Confirm())
    assert isinstance(done, Deposited), done
    assert done.compartment == opening.compartment
    return done


async def pick_up(runner: ServiceRunner, bus: SimulatedBus, code: str, compartment: str) -> None:
    """A recipient types the code; the door pops, they take the parcel and shut it."""
    channel = CHANNELS[compartment]
    pulses = bus.board(1).doors[channel].pulses
    (opening,) = await runner.submit(CodeEntered(code))
    assert opening == DoorsOpening((compartment,)), opening
    await eventually(lambda: bus.board(1).doors[channel].pulses > pulses, 5, "the pickup unlock")
    await runner.wait_door(compartment, Door.OPEN)
    bus.person.take_parcel(1, channel)
    bus.person.close_door(1, channel)
    await eventually(lambda: compartment not in _held(runner), 5, "the pickup seen finished")


def _held(runner: ServiceRunner) -> set[str]:
    return {p.compartment for p in runner.service.cabinet.parcels.values()}


async def test_deposit_and_pickup_online(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    runner = await service_factory()
    await runner.wait_online()
    await put_courier(peer)
    (signed_in,) = await runner.submit(CourierSignIn(COURIER, PIN))
    assert signed_in == SignedIn(COURIER, 0)

    done = await deposit(runner, bus, "SF1001", "M")
    assert done.compartment == "A02"  # the smallest free door that fits M
    await eventually(
        lambda: events_of(peer, "parcel.deposited"), 10, "parcel.deposited at the peer"
    )
    (event,) = peer.events
    assert event["seq"] == 1 and event["cab"] == "cab1"
    assert event["data"]["parcel_id"] == done.parcel_id
    assert event["data"]["phone"] == "+86" + PHONE
    assert event["data"]["compartment"] == "A02" and event["data"]["tracking_no"] == "SF1001"
    await runner.submit(CourierSignOut())

    await put_code(peer, done.parcel_id, "A02", "12345678", "cmd-codes")
    await pick_up(runner, bus, "12345678", "A02")
    await eventually(
        lambda: events_of(peer, "parcel.picked_up"), 10, "parcel.picked_up at the peer"
    )
    assert peer.seqs() == [1, 2]
    picked = peer.events[1]["data"]
    assert picked == {"compartment": "A02", "parcel_id": done.parcel_id, "method": "code"}
    assert bus.board(1).doors[2].pulses == 2  # one unlock for the deposit, one for the pickup
    # What the doors' movements showed on the kiosk without being asked for.
    await eventually(
        lambda: ParcelTaken("A02") in runner.screens, 5, "the pickup's thank-you screen"
    )
    assert DepositDoorClosed("A02") in runner.screens


async def test_deposit_and_pickup_with_the_broker_down(
    service_factory: ServiceFactory,
    peer: CloudPeer,
    sim: Sim,
    mosquitto: Mosquitto,
) -> None:
    bus, _server = sim
    runner = await service_factory()
    await runner.wait_online()
    await put_courier(peer)
    await runner.submit(CourierSignIn(COURIER, PIN))
    first = await deposit(runner, bus, "SF2001", "S")
    await eventually(lambda: peer.seqs() == [1], 10, "the first deposit at the peer")
    await put_code(peer, first.parcel_id, first.compartment, "87654321", "cmd-codes")
    peer.event_ack(1)
    await eventually(lambda: not runner.journal.unacked(), 10, "seq 1 pruned")

    mosquitto.stop()
    await runner.wait_online(False)
    second = await deposit(runner, bus, "SF2002", "L")  # offline
    await runner.submit(CourierSignOut())
    await pick_up(
        runner, bus, "87654321", first.compartment
    )  # offline, with the code pushed before
    assert [e.seq for e in runner.journal.unacked()] == [2, 3]
    assert peer.seqs() == [1]

    mosquitto.restart()
    await runner.wait_online()
    await eventually(lambda: len(peer.events) >= 3, 15, "the offline events at the peer")
    assert peer.seqs() == [1, 2, 3]  # in order, none lost, none doubled
    assert len({e["id"] for e in peer.events}) == 3
    assert [e["type"] for e in peer.events] == [
        "parcel.deposited",
        "parcel.deposited",
        "parcel.picked_up",
    ]
    assert peer.events[1]["data"]["parcel_id"] == second.parcel_id
    assert peer.events[2]["data"]["parcel_id"] == first.parcel_id
    peer.event_ack(3)
    await eventually(lambda: not runner.journal.unacked(), 10, "seqs 2 and 3 pruned")
    assert runner.journal.last_seq == 3
