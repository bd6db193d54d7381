"""A wall-clock step while a door is unlocked: the cabinet's timers run on time really passed.

Found by the fault campaign (`locker chaos`, clock-skew): a cabinet's clock stepped forward between
a recipient's code and the door's opening being seen, the unlock lapsed at once, the opening
counted as forced and the pickup was never recorded. The service now checks the wall clock
against a monotonic one (here the test's own `Ticks`, moved separately) and moves its timers by
any step. The step is made at the lock's pulse, on the simulator's bus thread: exactly between
the unlock and the reading that shows the door open.
"""

from __future__ import annotations

from collections.abc import Callable

from cabinet.core.compartments import Door
from cabinet.core.inputs import CodeEntered, CourierSignIn, CourierSignOut, Tick
from cabinet.core.screens import CloseDoor, DoorsOpening
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CloudPeer
from tests.cabinet.aio import eventually
from tests.cabinet.service.harness import (
    CHANNELS,
    COURIER,
    PIN,
    FakeClock,
    ServiceFactory,
    ServiceRunner,
    events_of,
    put_code,
    put_courier,
)
from tests.cabinet.service.test_flows import deposit

Sim = tuple[SimulatedBus, PtyServer]
CODE = "24681357"


class Ticks:
    """A monotonic clock the test moves on its own (a wall-clock step does not move it)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def _deposited(
    service_factory: ServiceFactory,
    peer: CloudPeer,
    bus: SimulatedBus,
    clock: FakeClock,
    ticks: Ticks,
) -> tuple[ServiceRunner, str, int]:
    """A parcel deposited and its code sent: the runner, its compartment and its channel."""
    runner = await service_factory(clock=clock, ticks=ticks)
    await runner.wait_online()
    await put_courier(peer)
    await runner.submit(CourierSignIn(COURIER, PIN))
    done = await deposit(runner, bus, "SF7001", "S")
    await runner.submit(CourierSignOut())
    await put_code(peer, done.parcel_id, done.compartment, CODE, "cmd-codes")
    return runner, done.compartment, CHANNELS[done.compartment]


async def _pick_up_while_the_clock_moves(
    runner: ServiceRunner,
    bus: SimulatedBus,
    compartment: str,
    channel: int,
    move: Callable[[], None],
) -> None:
    """The recipient types the code; `move` runs at the lock's pulse; the door springs open."""
    bus.board(1).on_pulse = lambda _record: move()
    assert await runner.submit(CodeEntered(CODE)) == [DoorsOpening((compartment,))]
    await runner.wait_door(compartment, Door.OPEN)
    bus.board(1).on_pulse = None
    bus.person.take_parcel(1, channel)
    bus.person.close_door(1, channel)


async def test_a_step_forward_at_the_unlock_keeps_the_pickup(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    clock, ticks = FakeClock(), Ticks()
    runner, compartment, channel = await _deposited(service_factory, peer, bus, clock, ticks)

    def ntp_steps() -> None:  # ten minutes on the wall; no real time passes
        clock.advance(600)

    await _pick_up_while_the_clock_moves(runner, bus, compartment, channel, ntp_steps)
    await eventually(lambda: events_of(peer, "parcel.picked_up"), 10, "parcel.picked_up")
    assert events_of(peer, "door.forced") == []
    assert compartment not in {p.compartment for p in runner.service.cabinet.parcels.values()}


async def test_ten_minutes_really_passing_at_the_unlock_still_lapses_it(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    """The control: both clocks move ten minutes (a bus stalled that long), the unlock window
    has passed, the opening is forced and the parcel stays recorded in its door, as before."""
    bus, _server = sim
    clock, ticks = FakeClock(), Ticks()
    runner, compartment, channel = await _deposited(service_factory, peer, bus, clock, ticks)

    def time_passes() -> None:
        clock.advance(600)
        ticks.t += 600

    await _pick_up_while_the_clock_moves(runner, bus, compartment, channel, time_passes)
    await eventually(lambda: events_of(peer, "door.forced"), 10, "door.forced")
    assert events_of(peer, "parcel.picked_up") == []


async def test_a_step_back_does_not_silence_the_left_open_alarm(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    """The wall clock steps an hour back while a door stands open: `door.left_open` still comes
    `left_open_after_s` after the opening in real time (unshifted, it would wait an hour more)."""
    bus, _server = sim
    clock, ticks = FakeClock(), Ticks()
    runner, compartment, _channel = await _deposited(service_factory, peer, bus, clock, ticks)
    bus.board(1).on_pulse = None
    assert await runner.submit(CodeEntered(CODE)) == [DoorsOpening((compartment,))]
    await runner.wait_door(compartment, Door.OPEN)  # the recipient leaves it open
    limit_s = runner.service.cabinet.config.left_open_after_s
    clock.advance(-3600)
    assert await runner.submit(Tick()) == []
    clock.advance(limit_s + 1)
    ticks.t += limit_s + 1
    assert await runner.submit(Tick()) == [CloseDoor(compartment)]
    await eventually(lambda: events_of(peer, "door.left_open"), 10, "door.left_open")
    assert events_of(peer, "door.left_open")[0]["data"]["seconds"] == limit_s + 1
