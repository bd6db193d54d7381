"""The compartment transition table, door readings, and allocation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from cabinet.core.allocation import allocate, free_by_size
from cabinet.core.compartments import (
    HOLDING,
    TRANSITIONS,
    WIRE_STATE,
    Compartment,
    CompartmentState,
    Door,
    DoorChange,
    Size,
    Trigger,
    natural_key,
    observe_door,
    transition,
)
from cabinet.core.errors import IllegalTransition, InvalidInput
from cabinet.core.inputs import CompartmentService, SizeChosen, UnlockFailed
from protocol import messages
from tests.cabinet.core.harness import T0, Harness, at_size_for, unlocks


def test_sizes_are_ordered_and_match_the_contract() -> None:
    assert [s.value for s in Size] == [s.value for s in messages.Size]
    assert Size.XL.fits(Size.S) and Size.M.fits(Size.M) and not Size.S.fits(Size.M)


def test_every_state_maps_to_a_contract_state() -> None:
    wire = {s.value for s in messages.CompartmentState}
    assert set(WIRE_STATE) == set(CompartmentState)
    assert set(WIRE_STATE.values()) == wire


def test_a_lock_can_fault_in_every_state() -> None:
    for state in CompartmentState:
        assert TRANSITIONS[(state, Trigger.LOCK_FAULT)] is CompartmentState.FAULTED


def test_every_trigger_is_used_and_guarded_or_not() -> None:
    assert {t for _, t in TRANSITIONS} == set(Trigger)
    assert set(HOLDING) <= set(Trigger)


@pytest.mark.parametrize("state", list(CompartmentState))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_illegal_transitions_raise_and_leave_the_compartment_as_it_was(
    state: CompartmentState, trigger: Trigger
) -> None:
    holds = state in (CompartmentState.OCCUPIED, CompartmentState.OPENING)
    compartment = Compartment("A01", Size.S, state=state, parcel_id="P1" if holds else None)
    snapshot = replace(compartment)
    if (state, trigger) in TRANSITIONS and HOLDING.get(trigger) in (None, holds):
        return  # legal: covered by the flows
    with pytest.raises(IllegalTransition) as caught:
        transition(compartment, trigger)
    assert caught.value.state == state.value and caught.value.action == trigger.value
    assert compartment == snapshot


def test_a_door_reading_says_what_it_meant() -> None:
    c = Compartment("A01", Size.S)
    c, change = observe_door(c, False, T0)
    assert (c.door, change) == (Door.CLOSED, DoorChange.CLOSED)
    assert observe_door(c, False, T0) == (c, DoorChange.NONE)
    opened, change = observe_door(c, True, T0)
    assert change is DoorChange.FORCED
    assert observe_door(opened, False, T0)[1] is DoorChange.CLOSED
    unlocked = replace(c, unlocked_at=T0)
    opened, change = observe_door(unlocked, True, T0 + timedelta(seconds=2))
    assert change is DoorChange.OPENED and opened.unlocked_at is None
    assert opened.opened_at == T0 + timedelta(seconds=2)
    # A restart in between (door UNKNOWN) does not lose the half-done cycle.
    unknown = replace(opened, door=Door.UNKNOWN)
    assert observe_door(unknown, False, T0)[1] is DoorChange.CYCLED


def test_bad_compartment_ids_are_refused() -> None:
    for bad in ("", "A 1", "A" * 17, "Ä1"):
        with pytest.raises(InvalidInput):
            Compartment(bad, Size.S)


def test_natural_order() -> None:
    assert sorted(["A10", "A2", "B1", "A1"], key=natural_key) == ["A1", "A2", "A10", "B1"]


def test_allocation_takes_the_smallest_fitting_size_then_the_documented_rule() -> None:
    layout = [
        Compartment("A10", Size.M),
        Compartment("A2", Size.M, low=True),
        Compartment("A3", Size.M),
        Compartment("C1", Size.L),
        Compartment("C2", Size.L, low=True),
    ]
    picked = allocate(layout, Size.S)
    assert picked is not None and picked.id == "A3"  # M fits S; not low first; A3 before A10
    picked = allocate(layout, Size.L)
    assert picked is not None and picked.id == "C2"  # heavy goes low
    picked = allocate(layout, Size.S, larger_than=Size.M)
    assert picked is not None and picked.id == "C2"
    assert allocate(layout, Size.XL) is None


def test_allocation_skips_doors_that_are_not_usable() -> None:
    layout = [
        Compartment("A1", Size.S, state=CompartmentState.OUT_OF_SERVICE),
        Compartment("A2", Size.S, state=CompartmentState.FAULTED),
        Compartment("A3", Size.S, door=Door.OPEN),
        Compartment("A4", Size.S, unlocked_at=T0),
        Compartment("A5", Size.S, state=CompartmentState.OCCUPIED, parcel_id="P"),
        Compartment("A6", Size.S),
    ]
    picked = allocate(layout, Size.S)
    assert picked is not None and picked.id == "A6"
    assert free_by_size(layout) == {Size.S: 1, Size.M: 0, Size.L: 0, Size.XL: 0}


def test_out_of_service_and_faulted_doors_are_skipped_in_a_deposit() -> None:
    h = Harness()
    h.do(CompartmentService("A01", in_service=False))
    h.do(UnlockFailed("A02", "broken"))
    h.sign_in()
    at_size_for(h)
    assert unlocks(h.do(SizeChosen(Size.S))) == ["A03"]
