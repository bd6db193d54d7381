"""Deposit, pickup, retrieval and faults on cabinets with occupancy sensors, through the simulator.

Two cabinets, each run by the real service on simulated boards on ptys and a real Mosquitto:

- `krcu`:  every door on Kerong KR-CU16 boards (sensors in every compartment); board 1 answers
           unlocks with its status, board 2 answers them with nothing (both occur, per the spec);
- `mixed`: S and M doors on an 8A/80 board (no sensors), L and XL doors on a KR-CU board.

What a person does at the doors (put a parcel in, take it, shut the door) moves the simulated
sensors; the cabinet sees only the bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cabinet.core.compartments import Compartment, Door, Size
from cabinet.core.inputs import (
    CodeEntered,
    Confirm,
    CourierSignIn,
    CourierSignOut,
    Input,
    PhoneEntered,
    Reopen,
    RetrieveParcels,
    SizeChosen,
    TrackingEntered,
)
from cabinet.core.screens import (
    DepositDoorOpening,
    Deposited,
    DepositEmpty,
    DoorMoved,
    DoorsOpening,
    ParcelStillInside,
    ParcelTaken,
)
from cabinet.drivers.mixed import MixedDriver
from cabinet.drivers.rs485 import BoardSpec, Rs485Driver
from cabinet.journal import Journal
from cabinet.mqtt_link import LinkSettings
from cabinet.ports import DoorDriver
from cabinet.service import CabinetService
from firmware_sim import BoardConfig, PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CAB, CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    CODE_KEY,
    COURIER,
    PHONE,
    PIN,
    TIMING,
    events_of,
    put_code,
    put_courier,
)
from tests.services import Mosquitto

LAYOUT = (
    Compartment("D01", Size.S),
    Compartment("D02", Size.M),
    Compartment("D03", Size.L, low=True),
    Compartment("D04", Size.XL, low=True),
)


@dataclass
class Where:
    bus: SimulatedBus
    board: int
    channel: int


@dataclass
class Rig:
    """A running cabinet service and where each compartment's door is on the simulated buses."""

    service: CabinetService
    doors: dict[str, Where]
    screens: list[object]

    async def submit(self, inp: Input) -> list[object]:
        return [show.screen for show in await self.service.submit(inp)]

    def door(self, compartment: str) -> Door:
        return self.service.cabinet.compartments[compartment].door

    async def wait_door(self, compartment: str, door: Door) -> None:
        await eventually(lambda: self.door(compartment) is door, 5, f"{compartment} {door}")

    async def wait_sensor(self, compartment: str, occupied: bool) -> None:
        await eventually(
            lambda: self.service.cabinet.compartments[compartment].occupied is occupied,
            5,
            f"{compartment}'s sensor reads occupied={occupied}",
        )

    def put_in(self, compartment: str) -> None:
        w = self.doors[compartment]
        w.bus.person.put_parcel(w.board, w.channel)

    def take_out(self, compartment: str) -> None:
        w = self.doors[compartment]
        w.bus.person.take_parcel(w.board, w.channel)

    def shut(self, compartment: str) -> None:
        w = self.doors[compartment]
        w.bus.person.close_door(w.board, w.channel)

    def pulses(self, compartment: str) -> int:
        w = self.doors[compartment]
        return w.bus.board(w.board).doors[w.channel].pulses

    def held(self) -> set[str]:
        return {p.compartment for p in self.service.cabinet.parcels.values()}


def _serve(configs: list[BoardConfig], tmp_path: Path, name: str) -> tuple[SimulatedBus, PtyServer]:
    bus = SimulatedBus(configs, pulse_s=0.0, query_reply_s=0.002)
    server = PtyServer(bus, link=tmp_path / name).start()
    return bus, server


@pytest.fixture(params=["krcu", "mixed"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def buses(kind: str, tmp_path: Path) -> Iterator[tuple[DoorDriver, dict[str, Where]]]:
    servers: list[PtyServer] = []
    if kind == "krcu":
        bus, server = _serve(
            [
                BoardConfig(address=1, channels=16, family="krcu", answers_unlock=True),
                BoardConfig(address=2, channels=16, family="krcu", answers_unlock=False),
            ],
            tmp_path,
            "krcu",
        )
        servers.append(server)
        routes = {"D01": (1, 1), "D02": (1, 2), "D03": (2, 1), "D04": (2, 2)}
        driver: DoorDriver = Rs485Driver(
            server.path,
            [BoardSpec(1, 16), BoardSpec(2, 16)],
            routes,
            timing=TIMING,
            board_family="krcu",
            name="rs485:krcu",
        )
        doors = {c: Where(bus, b, ch) for c, (b, ch) in routes.items()}
    else:
        bus_8a, server_8a = _serve([BoardConfig(address=1, channels=24)], tmp_path, "main")
        bus_kr, server_kr = _serve(
            [BoardConfig(address=1, channels=16, family="krcu", answers_unlock=False)],
            tmp_path,
            "krcu",
        )
        servers += [server_8a, server_kr]
        driver = MixedDriver(
            [
                Rs485Driver(
                    server_8a.path,
                    [BoardSpec(1, 24)],
                    {"D01": (1, 1), "D02": (1, 2)},
                    timing=TIMING,
                    name="rs485:main",
                ),
                Rs485Driver(
                    server_kr.path,
                    [BoardSpec(1, 16)],
                    {"D03": (1, 1), "D04": (1, 2)},
                    timing=TIMING,
                    board_family="krcu",
                    name="rs485:krcu",
                ),
            ]
        )
        doors = {
            "D01": Where(bus_8a, 1, 1),
            "D02": Where(bus_8a, 1, 2),
            "D03": Where(bus_kr, 1, 1),
            "D04": Where(bus_kr, 1, 2),
        }
    yield driver, doors
    for server in servers:
        server.close()


@pytest.fixture
async def rig(
    kind: str,
    buses: tuple[DoorDriver, dict[str, Where]],
    mosquitto: Mosquitto,
    peer: CloudPeer,
    tmp_path: Path,
) -> AsyncIterator[Rig]:
    driver, doors = buses
    sensed = set(doors) if kind == "krcu" else {"D03", "D04"}
    layout = [Compartment(c.id, c.size, low=c.low, sensor=c.id in sensed) for c in LAYOUT]
    journal = Journal.open(tmp_path / "journal.sqlite3", cab=CAB)
    service = CabinetService(
        cabinet_id=CAB,
        layout=layout,
        driver=driver,
        journal=journal,
        code_key=CODE_KEY,
        link_settings=LinkSettings(
            cab=CAB,
            host=mosquitto.host,
            port=mosquitto.port,
            keepalive_s=5,
            connect_timeout_s=5,
            firmware="test-1",
        ),
        clock=lambda: datetime.now(UTC),
        tick_s=None,
    )
    screens: list[object] = []
    service.add_screen_listener(lambda show: screens.append(show.screen))
    await service.start()
    rig = Rig(service, doors, screens)
    await eventually(lambda: service.link.subscribed.is_set(), 10, "the link online")
    await put_courier(peer)
    try:
        yield rig
    finally:
        await service.stop()
        journal.close()


async def _open_for_deposit(rig: Rig, tracking_no: str, size: str) -> str:
    assert await rig.submit(TrackingEntered(tracking_no))
    assert await rig.submit(PhoneEntered(PHONE))
    screens = await rig.submit(SizeChosen(size))
    opening = screens[-1]
    assert isinstance(opening, DepositDoorOpening), screens
    await rig.wait_door(opening.compartment, Door.OPEN)
    return opening.compartment


async def _shut_and_wait_cycle(rig: Rig, compartment: str) -> None:
    rig.shut(compartment)
    await eventually(
        lambda: (s := rig.service.cabinet.session) is not None and s.draft.door_cycled,
        5,
        "the deposit door seen shut",
    )


async def _deposit(rig: Rig, tracking_no: str, size: str) -> Deposited:
    compartment = await _open_for_deposit(rig, tracking_no, size)
    rig.put_in(compartment)
    await _shut_and_wait_cycle(rig, compartment)
    (done,) = await rig.submit(Confirm())
    assert isinstance(done, Deposited), done
    return done


async def test_a_sensed_deposit_needs_the_parcel_in_and_a_pickup_needs_it_out(
    rig: Rig, peer: CloudPeer
) -> None:
    await rig.submit(CourierSignIn(COURIER, PIN))
    # L is a KR-CU door in both cabinets (in `krcu`, on the board that never answers unlocks).
    door = await _open_for_deposit(rig, "SF7001", "L")
    assert door == "D03"
    await rig.wait_sensor(door, False)
    await _shut_and_wait_cycle(rig, door)  # shut with nothing put in
    assert await rig.submit(Confirm()) == [DepositEmpty(door)]
    assert rig.held() == set() and not events_of(peer, "parcel.deposited")

    assert await rig.submit(Reopen()) == [DepositDoorOpening(door, Size.L)]
    await rig.wait_door(door, Door.OPEN)
    rig.put_in(door)
    await rig.wait_sensor(door, True)
    rig.shut(door)
    await rig.wait_door(door, Door.CLOSED)
    (done,) = await rig.submit(Confirm())
    assert isinstance(done, Deposited) and done.compartment == door
    await rig.submit(CourierSignOut())
    await eventually(lambda: events_of(peer, "parcel.deposited"), 10, "parcel.deposited")

    # The recipient opens the door and shuts it again without taking the parcel.
    await put_code(peer, done.parcel_id, door, "24681357", "cmd-code")
    pulses = rig.pulses(door)
    assert await rig.submit(CodeEntered("24681357")) == [DoorsOpening((door,))]
    await eventually(lambda: rig.pulses(door) > pulses, 5, "the pickup unlock")
    await rig.wait_door(door, Door.OPEN)
    rig.shut(door)
    await eventually(lambda: ParcelStillInside(door) in rig.screens, 5, "told it is inside")
    assert rig.held() == {door}  # live, and its code still opens it
    assert not events_of(peer, "parcel.picked_up")

    assert await rig.submit(CodeEntered("24681357")) == [DoorsOpening((door,))]
    await rig.wait_door(door, Door.OPEN)
    rig.take_out(door)
    rig.shut(door)
    await eventually(lambda: ParcelTaken(door) in rig.screens, 5, "the pickup finished")
    assert rig.held() == set()
    await eventually(lambda: events_of(peer, "parcel.picked_up"), 10, "parcel.picked_up")
    assert not events_of(peer, "door.occupancy_mismatch")


async def test_retrieval_unsensed_doors_and_an_occupancy_alarm(
    rig: Rig, peer: CloudPeer, kind: str
) -> None:
    await rig.submit(CourierSignIn(COURIER, PIN))
    # S: a KR-CU door in `krcu`, an 8A/80 door without a sensor in `mixed`. A door shut with
    # nothing put in is confirmed only where no sensor can tell.
    door = await _open_for_deposit(rig, "SF7002", "S")
    await _shut_and_wait_cycle(rig, door)
    (answer,) = await rig.submit(Confirm())
    if kind == "mixed":
        assert isinstance(answer, Deposited)  # no sensor: the courier's word stands
        parcel_id = answer.parcel_id
    else:
        assert answer == DepositEmpty(door)
        assert await rig.submit(Reopen())
        await rig.wait_door(door, Door.OPEN)
        rig.put_in(door)
        await rig.wait_sensor(door, True)
        rig.shut(door)
        await rig.wait_door(door, Door.CLOSED)
        (done,) = await rig.submit(Confirm())
        assert isinstance(done, Deposited)
        parcel_id = done.parcel_id

    # The cloud wants it back; the courier takes it out.
    peer.command("cmd-ret", type="retrievals.put", data={"parcel_ids": [parcel_id]})
    await eventually(lambda: peer.acks_for("cmd-ret"), 10, "the retrievals.put ack")
    await rig.submit(RetrieveParcels())
    await rig.wait_door(door, Door.OPEN)
    if kind == "krcu":
        rig.take_out(door)
    rig.shut(door)
    await eventually(lambda: events_of(peer, "parcel.retrieved"), 10, "parcel.retrieved")
    assert rig.held() == set()

    # Something is left in the free XL compartment (a KR-CU door in both): an alarm, once.
    w = rig.doors["D04"]
    w.bus.faults.stick_occupancy(w.board, w.channel, True)
    await eventually(lambda: events_of(peer, "door.occupancy_mismatch"), 10, "the alarm")
    (alarm,) = events_of(peer, "door.occupancy_mismatch")
    assert alarm["data"] == {"compartment": "D04", "expected": "empty", "sensed": "occupied"}


async def test_a_jammed_krcu_lock_moves_the_courier_to_another_door(
    rig: Rig, peer: CloudPeer
) -> None:
    w = rig.doors["D03"]
    w.bus.faults.jam(w.board, w.channel)
    await rig.submit(CourierSignIn(COURIER, PIN))
    assert await rig.submit(TrackingEntered("SF7003"))
    assert await rig.submit(PhoneEntered(PHONE))
    # The unlock is awaited within the step: its failure's screens come back with it.
    screens = await rig.submit(SizeChosen("L"))
    assert DoorMoved("D03", "D04") in screens, screens
    await eventually(lambda: events_of(peer, "lock.fault"), 10, "lock.fault")
    (fault,) = events_of(peer, "lock.fault")
    assert fault["data"]["compartment"] == "D03"
    assert "still latched" in fault["data"]["detail"] or "unknown" in fault["data"]["detail"]
    await rig.wait_door("D04", Door.OPEN)
    rig.put_in("D04")
    await _shut_and_wait_cycle(rig, "D04")
    (done,) = await rig.submit(Confirm())
    assert isinstance(done, Deposited) and done.compartment == "D04"
