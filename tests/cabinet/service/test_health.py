"""Per-door health through the service: counted from a real deposit and a jammed lock on the
simulated board, carried by the birth, re-published on the hour, and kept across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cabinet.core.compartments import Door
from cabinet.core.inputs import CourierSignIn, PhoneEntered, SizeChosen, Tick, TrackingEntered
from cabinet.journal import Journal
from firmware_sim import PtyServer, SimulatedBus
from tests.cabinet.adapters.harness import CAB, CloudPeer
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
from tests.cabinet.service.test_flows import deposit

Sim = tuple[SimulatedBus, PtyServer]
BOARD = "rs485:1"  # the harness's driver is named "rs485": its board 1
DOOR_BOARDS = {door: BOARD for door in ("A01", "A02", "A03", "A04")}


def latest_health(peer: CloudPeer) -> dict[str, Any]:
    births = [s for s in peer.states if s.get("online") and "health" in s]
    assert births, "no birth with health"
    return births[-1]["health"]


def door(health: dict[str, Any], compartment: str) -> dict[str, Any]:
    (entry,) = [d for d in health["doors"] if d["compartment"] == compartment]
    return entry


async def test_wear_is_counted_sent_with_the_birth_and_kept_across_a_restart(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim
) -> None:
    bus, _server = sim
    clock = FakeClock()
    runner = await service_factory(clock=clock, door_boards=DOOR_BOARDS)
    await runner.wait_online()
    await eventually(lambda: peer.states, 5, "the birth")
    fresh = door(latest_health(peer), "A02")
    assert fresh == {
        "compartment": "A02",
        "board": BOARD,
        "pulses": 0,
        "failed_unlocks": 0,
        "flaps": 0,
        "opens_timed": 0,
    }

    await put_courier(peer)
    await runner.submit(CourierSignIn(COURIER, PIN))
    await deposit(runner, bus, "SF7001", "M")  # A02: pulse, the door springs open, shut
    bus.faults.jam(1, 1)  # A01, the S door: its lock never releases
    await runner.submit(TrackingEntered("SF7002"))
    await runner.submit(PhoneEntered(PHONE))
    await runner.submit(SizeChosen("S"))
    await eventually(lambda: events_of(peer, "lock.fault"), 10, "lock.fault at the peer")

    births = len(peer.states)
    await runner.submit(Tick())  # the first tick sets the hour's clock
    clock.advance(3601)
    await runner.submit(Tick())
    await eventually(lambda: len(peer.states) > births, 5, "the birth published again")
    health = latest_health(peer)
    opened = door(health, "A02")
    assert opened["pulses"] == 1 and opened["failed_unlocks"] == 0
    assert opened["opens_timed"] == 1
    assert 0 <= opened["open_ms_recent"] == opened["open_ms_long"] < 5000
    jammed = door(health, "A01")
    assert jammed["pulses"] == 1 and jammed["failed_unlocks"] == 1
    assert "open_ms_recent" not in jammed  # never seen open: no time
    (board,) = health["boards"]
    assert board["board"] == BOARD and board["requests"] > 0 and board["errors"] >= 1
    # The re-published birth is the same session: same boot, later ts.
    assert peer.states[-1]["boot"] == peer.states[0]["boot"]

    await runner.close()
    again = await service_factory(clock=clock, door_boards=DOOR_BOARDS)
    await again.wait_online()
    await eventually(lambda: peer.states[-1]["boot"] > peer.states[0]["boot"], 5, "new birth")
    kept = latest_health(peer)
    assert door(kept, "A02")["pulses"] == 1 and door(kept, "A02")["opens_timed"] == 1
    assert door(kept, "A01")["failed_unlocks"] == 1
    (board_kept,) = kept["boards"]
    # The driver starts from zero; the journal's totals do not.
    assert board_kept["errors"] >= board["errors"]
    assert board_kept["requests"] >= board["requests"]


async def test_a_pulse_is_in_its_unlocks_own_commit_so_a_crash_right_after_keeps_it(
    service_factory: ServiceFactory, peer: CloudPeer, sim: Sim, tmp_path: Path
) -> None:
    """The process dies just after the unlock's commit: no later step, no clean stop, writes."""
    runner = await service_factory(door_boards=DOOR_BOARDS)
    await runner.wait_online()
    await put_courier(peer)
    await runner.submit(CourierSignIn(COURIER, PIN))
    await runner.submit(TrackingEntered("SF7101"))
    await runner.submit(PhoneEntered(PHONE))

    journal = runner.journal
    commit_step = journal.commit_step
    crashed = False

    def commit_then_crash(*args: Any, **kwargs: Any) -> Any:
        """Commit the step that journals the unlock; from then on nothing reaches the file."""
        nonlocal crashed
        if crashed:
            return []
        built = commit_step(*args, **kwargs)
        unlocks = args[2] if len(args) > 2 else kwargs.get("pending_unlocks", ())
        crashed = bool(unlocks)
        return built

    def lost(*_args: Any, **_kwargs: Any) -> None:
        return None

    journal.commit_step = commit_then_crash  # type: ignore[method-assign]
    journal.unlock_done = lost  # type: ignore[method-assign]
    journal.save_health = lost  # type: ignore[method-assign]
    (opening,) = await runner.submit(SizeChosen("M"))
    assert crashed and opening.compartment == "A02"
    await runner.wait_door("A02", Door.OPEN)  # its step ran, and wrote nothing
    await runner.close()  # the clean stop's health write is lost too

    with Journal.open(tmp_path / "journal.sqlite3", cab=CAB) as reopened:
        doors, boards = reopened.load_health()
        assert reopened.pending_unlocks() == ["A02"]  # the crash came before unlock_done
    assert doors["A02"]["pulses"] == 1
    assert boards[BOARD]["requests"] > 0  # the polls before the unlock, counted in its commit
