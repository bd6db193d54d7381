"""The pulse log: every unlock pulse a lock receives, in a file per board, opened door or not."""

from __future__ import annotations

from pathlib import Path

from firmware_sim import BoardConfig, SimulatedBus
from firmware_sim.pulse_log import PulseLog, file_name, read_pulses
from protocol.lockboard.family_8a import Unlock
from tests.firmware_sim.conftest import FAST, wire


def test_each_pulse_is_logged_with_whether_it_opened_the_door(tmp_path: Path, clock) -> None:
    bus = SimulatedBus([BoardConfig(address=1, channels=24)], clock=clock, **FAST)
    log = PulseLog(tmp_path, bus.boards)
    wire(bus, Unlock(1, 3), now=10.0)  # opens door 3
    wire(bus, Unlock(1, 3), now=11.0)  # door 3 already open: a retry that opens nothing
    bus.faults.jam(1, 5)
    wire(bus, Unlock(1, 5), now=12.0)  # jammed: the coil pulses, the door stays shut
    log.close()

    pulses = read_pulses(tmp_path / file_name("8a", 1))
    assert [(p["at"], p["channel"], p["opened"], p["jammed"]) for p in pulses] == [
        (10.0, 3, True, False),
        (11.0, 3, False, False),
        (12.0, 5, False, True),
    ]


def test_a_missing_log_reads_as_no_pulses(tmp_path: Path) -> None:
    assert read_pulses(tmp_path / file_name("8a", 2)) == []
