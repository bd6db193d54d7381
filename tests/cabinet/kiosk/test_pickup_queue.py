"""The chaos finding, end to end through the kiosk API and the simulated board: door A01's sensor
is stuck "open", so its unlock is never seen; a second recipient's door waits behind it. If they
give up, their door's unlock frame is never written; if they wait, it comes within seconds.

The cabinet runs on an injected clock: its own tick task runs as in production (so what a tick
shows reaches the page's event stream), and the test moves the clock; no sleeps for timers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cabinet.core.compartments import CompartmentState, Door
from cabinet.core.inputs import Tick
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.kiosk.harness import KioskRunner, read_events, start_kiosk_for
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PHONE,
    PIN,
    FakeClock,
    ServiceRunner,
    put_code,
    put_courier,
)
from tests.services import Mosquitto

Sim = tuple[SimulatedBus, PtyServer]
FIRST, SECOND = "11112222", "33334444"


def pulses(sim: Sim, compartment: str) -> int:
    """Unlock frames the board has received for this door."""
    return sim[0].board(1).doors[CHANNELS[compartment]].pulses


@pytest.fixture
async def rig(
    mosquitto: Mosquitto, peer: CloudPeer, sim: Sim, tmp_path: Path
) -> AsyncIterator[tuple[ServiceRunner, KioskRunner, FakeClock]]:
    """A01 (S) and A02 (M) each hold a recipient's parcel; A01's sensor then sticks "open"."""
    clock = FakeClock()
    runner = ServiceRunner(
        mosquitto, sim[1].path, tmp_path / "journal.sqlite3", clock=clock, tick_s=0.02
    )
    await runner.start()
    kiosk = await start_kiosk_for(runner)
    try:
        await runner.wait_online()
        await put_courier(peer)
        await kiosk.input("CourierSignIn", courier_id=COURIER, pin=PIN)
        for door, size, code in (("A01", "S", FIRST), ("A02", "M", SECOND)):
            await kiosk.input("TrackingEntered", tracking_no=f"SF-{door}")
            await kiosk.input("PhoneEntered", phone=PHONE)
            await kiosk.input("SizeChosen", size=size)
            await runner.wait_door(door, Door.OPEN)
            sim[0].person.put_parcel(1, CHANNELS[door])
            sim[0].person.close_door(1, CHANNELS[door])
            await eventually(
                lambda: (s := runner.service.cabinet.session) is not None and s.draft.door_cycled,
                5,
                f"{door} shut on its parcel",
            )
            (deposited,) = await kiosk.input("Confirm")
            await put_code(peer, deposited["parcel_id"], door, code, f"cmd-{door}")
        await kiosk.input("CourierSignOut")
        sim[0].faults.stick_sensor(1, CHANNELS["A01"], latched=False)  # reads "open" for good
        await runner.wait_door("A01", Door.OPEN)
        yield runner, kiosk, clock
    finally:
        await kiosk.close()
        await runner.close()


async def second_person_queued(
    runner: ServiceRunner, kiosk: KioskRunner, clock: FakeClock, sim: Sim
) -> dict[str, Any]:
    """The first recipient's code pulses A01 (never seen to move); a second code queues A02."""
    (first,) = await kiosk.input("CodeEntered", code=FIRST)
    assert first["compartments"] == ["A01"] and first["after_others"] is False
    await eventually(lambda: pulses(sim, "A01") == 2, 5, "A01 pulsed for the pickup")
    clock.advance(1)
    (second,) = await kiosk.input("CodeEntered", code=SECOND)
    assert second["compartments"] == ["A02"]
    assert second["after_others"] is True  # the screen says at once that A02 waits its turn
    assert pulses(sim, "A02") == 1  # the deposit's pulse only
    return second


async def test_a_queued_door_whose_person_gave_up_is_never_pulsed(
    rig: tuple[ServiceRunner, KioskRunner, FakeClock], sim: Sim
) -> None:
    runner, kiosk, clock = rig
    second = await second_person_queued(runner, kiosk, clock, sim)
    # The person leaves the pickup screen before their turn (Done, home, or the idle timeout).
    assert await kiosk.input("PickupClosed", pickup=second["pickup"]) == []
    for _ in range(4):  # past A01's settle time, its whole unlock window, a left-open alarm
        clock.advance(40)
        await runner.submit(Tick())
    assert pulses(sim, "A02") == 1  # no unlock frame for A02 was ever written
    a02 = runner.service.cabinet.compartments["A02"]
    assert a02.state is CompartmentState.OCCUPIED and a02.parcel_id is not None
    assert sim[0].board(1).doors[CHANNELS["A02"]].occupied  # the parcel is still in there
    # The code still works: back at the cabinet, the door opens at once.
    (again,) = await kiosk.input("CodeEntered", code=SECOND)
    assert again["compartments"] == ["A02"] and again["after_others"] is False
    await eventually(lambda: pulses(sim, "A02") == 2, 5, "A02 pulsed for the retry")


async def test_a_second_person_who_waits_gets_their_door_within_seconds(
    rig: tuple[ServiceRunner, KioskRunner, FakeClock], sim: Sim
) -> None:
    runner, kiosk, clock = rig
    events = await read_events(kiosk.url)
    try:
        await second_person_queued(runner, kiosk, clock, sim)
        clock.advance(1)  # 2 s after A01's pulse: its lock may still be letting go
        await runner.submit(Tick())
        assert pulses(sim, "A02") == 1
        clock.advance(1)  # 3 s: unlock_settle_s, not the 60 s unlock window
        await eventually(lambda: pulses(sim, "A02") == 2, 5, "A02 pulsed on the next tick")
        assert await events.next("screen") == {"type": "DoorNowOpening", "compartment": "A02"}
        await runner.wait_door("A02", Door.OPEN)
    finally:
        await events.close()
