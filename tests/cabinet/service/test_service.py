"""The service's seams: timers on the injected clock, lock faults, commands refused, config.put."""

from __future__ import annotations

from cabinet.core.compartments import CompartmentState, Door
from cabinet.core.inputs import (
    CourierSignIn,
    PhoneEntered,
    SizeChosen,
    Tick,
    TrackingEntered,
)
from cabinet.core.screens import CloseDoor, DepositDoorOpening, DoorMoved
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    COURIER,
    PHONE,
    PIN,
    FakeClock,
    ServiceFactory,
    events_of,
    put_courier,
)

Sim = tuple[SimulatedBus, PtyServer]


async def test_forced_door_then_left_open_on_the_injected_clock(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    clock = FakeClock()
    runner = await service_factory(clock=clock)
    await runner.wait_online()
    bus.person.force_door(1, 3)
    await eventually(lambda: events_of(peer, "door.forced"), 10, "door.forced at the peer")
    assert runner.door("A03") is Door.OPEN
    assert await runner.submit(Tick()) == []  # nothing is due yet: the clock has not moved
    clock.advance(runner.service.cabinet.config.left_open_after_s)
    assert await runner.submit(Tick()) == [CloseDoor("A03")]
    await eventually(lambda: events_of(peer, "door.left_open"), 10, "door.left_open at the peer")
    (left_open,) = events_of(peer, "door.left_open")
    assert left_open["data"] == {"compartment": "A03", "seconds": 120}
    assert peer.seqs() == [1, 2]


async def test_a_jammed_lock_moves_the_deposit_to_another_door(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    runner = await service_factory()
    await runner.wait_online()
    await put_courier(peer)
    bus.faults.jam(1, 2)  # A02, the only M door
    await runner.submit(CourierSignIn(COURIER, PIN))
    await runner.submit(TrackingEntered("SF4001"))
    await runner.submit(PhoneEntered(PHONE))
    screens = await runner.submit(SizeChosen("M"))
    # The failed unlock is the next step, before anything else: the courier sees both at once.
    assert screens == [
        DepositDoorOpening("A02", "M"),
        DoorMoved("A02", "A03"),
        DepositDoorOpening("A03", "L"),
    ]
    assert runner.service.cabinet.compartments["A02"].state is CompartmentState.FAULTED
    assert bus.board(1).doors[3].pulses == 1
    await eventually(lambda: events_of(peer, "lock.fault"), 10, "lock.fault at the peer")
    assert events_of(peer, "lock.fault")[0]["data"]["compartment"] == "A02"
    assert runner.journal.pending_unlocks() == []


async def test_commands_are_acked_refused_or_applied(
    service_factory: ServiceFactory, peer: CloudPeer
) -> None:
    runner = await service_factory()
    await runner.wait_online()
    peer.command(
        "c-bad", type="compartment.service", data={"compartment": "Z99", "in_service": False}
    )
    peer.command("c-cfg", type="config.put", data={"settings": {"left_open_after_s": 30}})
    peer.command("c-key", type="config.put", data={"settings": {"nope": 1}})
    peer.command(
        "c-svc", type="compartment.service", data={"compartment": "A04", "in_service": False}
    )
    await eventually(
        lambda: all(peer.acks_for(c) for c in ("c-bad", "c-cfg", "c-key", "c-svc")), 10, "acks"
    )
    (bad,) = peer.acks_for("c-bad")
    assert bad["ok"] is False and "Z99" in bad["error"]
    assert peer.acks_for("c-cfg")[0]["ok"] is True
    (key,) = peer.acks_for("c-key")
    assert key["ok"] is False and "'nope'" in key["error"]
    assert peer.acks_for("c-svc")[0]["ok"] is True
    cabinet = runner.service.cabinet
    assert cabinet.config.left_open_after_s == 30
    assert cabinet.compartments["A04"].state is CompartmentState.OUT_OF_SERVICE
    snapshot = runner.journal.load_snapshot()
    assert snapshot is not None and snapshot.data["config"]["left_open_after_s"] == 30
    await eventually(
        lambda: events_of(peer, "compartment.service"), 10, "compartment.service event"
    )
    assert peer.seqs() == [1]
