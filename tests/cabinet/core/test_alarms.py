"""Alarms: forced doors, doors left open (once per opening), lock faults, service changes."""

from __future__ import annotations

import pytest

from cabinet.core.compartments import CompartmentState, Size
from cabinet.core.effects import lock_fault
from cabinet.core.errors import IllegalTransition
from cabinet.core.inputs import CompartmentOpen, CompartmentService, CourierSignOut, UnlockFailed
from cabinet.core.screens import CloseDoor
from tests.cabinet.core.harness import Harness, emitted, event_types, shown


def test_a_door_opened_without_an_unlock_is_forced() -> None:
    h = Harness()
    h.door("A01", False)
    assert emitted(h.door("A01", True)) == [{"compartment": "A01"}]
    assert emitted(h.door("A01", True)) == []  # the same opening, polled again
    h.door("A01", False)
    assert event_types(h.door("A01", True)) == ["door.forced"]  # a new opening
    # Forcing changes no state, but an open door is never offered to a deposit.
    assert h.cab.compartments["A01"].state is CompartmentState.FREE


def test_an_unlocked_door_is_not_forced_until_its_unlock_lapses() -> None:
    h = Harness()
    h.door("A03", False)
    h.do(CompartmentOpen("A03", "cleaning", "tech"))
    h.tick(59)
    assert emitted(h.door("A03", True)) == []
    h.door("A03", False)
    h.do(CompartmentOpen("A03", "cleaning", "tech"))
    h.tick(60)  # lapsed
    assert event_types(h.door("A03", True)) == ["door.forced"]


def test_door_left_open_is_reported_once_per_opening_with_its_seconds() -> None:
    h = Harness()
    h.door("A01", True)
    assert emitted(h.tick(119)) == []
    effects = h.tick(5)
    assert emitted(effects, "door.left_open") == [{"compartment": "A01", "seconds": 124}]
    assert CloseDoor("A01") in shown(effects)
    assert emitted(h.tick(1000)) == []
    h.door("A01", False)
    h.door("A01", True)
    h.advance(200)
    assert emitted(h.tick(), "door.left_open") == [{"compartment": "A01", "seconds": 200}]


def test_lock_fault_then_service_repairs_it() -> None:
    h = Harness()
    h.sign_in()
    parcel_id = h.deposit("SF1", Size.S)
    h.do(CourierSignOut())
    effects = h.do(UnlockFailed("A01", "coil open\r\ncircuit"))
    assert emitted(effects, "lock.fault") == [{"compartment": "A01", "detail": "coil open circuit"}]
    assert h.cab.compartments["A01"].state is CompartmentState.FAULTED
    before = h.cab.copy()
    with pytest.raises(IllegalTransition):
        h.do(CompartmentService("A01", in_service=False))  # it holds a parcel
    assert h.cab == before
    effects = h.do(CompartmentService("A01", in_service=True))
    assert emitted(effects) == [{"compartment": "A01", "in_service": True}]
    assert h.cab.compartments["A01"].state is CompartmentState.OCCUPIED
    assert h.cab.compartments["A01"].parcel_id == parcel_id


def test_out_of_service_and_back() -> None:
    h = Harness()
    effects = h.do(CompartmentService("A02", in_service=False))
    assert emitted(effects, "compartment.service") == [{"compartment": "A02", "in_service": False}]
    assert h.do(CompartmentService("A02", in_service=False)) == []  # already out
    assert h.cab.compartments["A02"].wire_state == "out_of_service"
    assert emitted(h.do(CompartmentService("A02", in_service=True))) == [
        {"compartment": "A02", "in_service": True}
    ]
    assert h.do(CompartmentService("A02", in_service=True)) == []


def test_lock_fault_detail_fits_the_contract() -> None:
    assert lock_fault(compartment="A01", detail="").data["detail"] == "unlock failed"
    assert len(lock_fault(compartment="A01", detail="x" * 900).data["detail"]) == 500
