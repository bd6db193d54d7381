"""The health ledger on its own: pulse-to-open times, flaps, bus errors across driver restarts,
and the journal keeping it all (a reopened journal gives the same totals)."""

from __future__ import annotations

from pathlib import Path

from cabinet.health import FLAP_S, LONG, OPEN_WAIT_S, RECENT, HealthLedger
from cabinet.journal import Journal


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rs485(requests: int, timeouts: int, bad_checksum: int = 0) -> dict[str, object]:
    board = {"requests": requests, "timeouts": timeouts, "bad_checksum": bad_checksum}
    return {"driver": "rs485", "name": "rs485:main", "boards": {"1": board}}


def test_open_times_medians_recent_against_long() -> None:
    ticks = Ticks()
    ledger = HealthLedger({"A01": "main:1"}, ticks=ticks)
    for i in range(LONG + 20):
        ledger.pulsed("A01")
        # 300 ms for most of its life, then 600 ms for the last RECENT opens: a stiffening lock.
        ticks.now += 0.6 if i >= LONG + 20 - RECENT else 0.3
        ledger.door_seen("A01", True)
        ticks.now += 10
        ledger.door_seen("A01", False)
    (entry,) = ledger.summary()["doors"]
    assert entry["pulses"] == entry["opens_timed"] == LONG + 20
    assert entry["open_ms_recent"] == 600
    assert entry["open_ms_long"] == 300  # the median of the last LONG opens
    assert len(ledger.doors["A01"].open_ms) == LONG
    assert entry["flaps"] == 0  # a pulsed open shut quickly is a person, not a flap


def test_a_late_open_is_no_sample_and_a_failed_unlock_forgets_its_pulse() -> None:
    ticks = Ticks()
    ledger = HealthLedger({"A01": None}, ticks=ticks)
    ledger.pulsed("A01")
    ticks.now += OPEN_WAIT_S + 1
    ledger.door_seen("A01", True)
    ledger.pulsed("A01")
    ledger.unlock_failed("A01")
    ledger.door_seen("A01", True)
    (entry,) = ledger.summary()["doors"]
    assert entry == {
        "compartment": "A01",
        "pulses": 2,
        "failed_unlocks": 1,
        "flaps": 0,
        "opens_timed": 0,
    }


def test_flaps_of_the_door_and_occupancy_sensors() -> None:
    ticks = Ticks()
    ledger = HealthLedger({"A01": None}, ticks=ticks)
    ledger.door_seen("A01", True)  # nobody unlocked it
    ticks.now += FLAP_S / 4
    ledger.door_seen("A01", False)  # and shut at once: a loose reed switch
    ticks.now += 60
    ledger.door_seen("A01", True)
    ticks.now += FLAP_S * 5
    ledger.door_seen("A01", False)  # slow: a person (a forced door is another alarm)
    ledger.occupancy_seen("A01", True)
    ticks.now += 0.2
    ledger.occupancy_seen("A01", False)
    assert ledger.summary()["doors"][0]["flaps"] == 2
    ledger.occupancy_seen("B99", True)  # not a door of this cabinet: ignored
    ledger.pulsed("B99")


def test_bus_errors_add_up_across_driver_restarts_and_survive_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    ledger = HealthLedger({"A01": "main:1"}, ticks=Ticks())
    ledger.boards_seen(rs485(100, 2, 1))
    ledger.boards_seen(rs485(150, 3, 1))
    ledger.pulsed("A01")
    with Journal.open(path, cab="cab1") as journal:
        journal.commit_step({"k": 1}, health=ledger.take_dirty())
    assert not ledger.dirty

    # A restart: the driver counts from zero again; the journal's totals carry on.
    with Journal.open(path, cab="cab1") as journal:
        again = HealthLedger({"A01": "main:1"}, ticks=Ticks())
        again.load(*journal.load_health())
        again.boards_seen(rs485(10, 1))
        journal.save_health(again.take_dirty())
        summary = again.summary()
    assert summary["boards"] == [{"board": "main:1", "requests": 160, "errors": 5}]
    assert summary["doors"][0]["pulses"] == 1
    with Journal.open(path, cab="cab1") as journal:
        doors, boards = journal.load_health()
    assert boards == {"main:1": {"requests": 160, "errors": 5}}
    assert doors["A01"]["pulses"] == 1
