"""The door rules (`cloud.core.doors`): what events and births do to a compartment and its
parcel's deadline clock, without a database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cloud.core import doors
from cloud.core import parcels as p
from cloud.core.pauses import PauseReason
from tests.cloud.core import factories as f

FAULTED = PauseReason.COMPARTMENT_FAULTED
OFFLINE = PauseReason.CABINET_OFFLINE
DOOR = "A03"  # the factories' parcels are behind it


def test_parcels_in_and_out_set_the_door() -> None:
    door = doors.Door(doors.FREE)
    assert doors.after_deposit(door) == doors.Door(doors.OCCUPIED)
    # Out of service stays out of service whatever goes in or out.
    out = doors.Door(doors.OCCUPIED, in_service=False)
    assert doors.after_left_locker(out) == doors.Door(doors.FREE, in_service=False)
    assert doors.after_fault(door) == doors.Door(doors.FAULTED)


@pytest.mark.parametrize(
    ("before", "in_service", "after"),
    [
        (doors.Door(doors.FAULTED), True, doors.Door(doors.FREE)),  # back in service: fault gone
        (doors.Door(doors.FAULTED), False, doors.Door(doors.FAULTED, in_service=False)),
        (doors.Door(doors.OCCUPIED), False, doors.Door(doors.OCCUPIED, in_service=False)),
        (doors.Door(doors.OCCUPIED, False), True, doors.Door(doors.OCCUPIED)),
    ],
)
def test_service_changes(before: doors.Door, in_service: bool, after: doors.Door) -> None:
    assert doors.after_service(before, in_service=in_service) == after


@pytest.mark.parametrize(
    ("state", "in_service", "usable"),
    [
        ("free", True, True),
        ("occupied", True, True),
        ("reserved", True, True),
        ("faulted", True, False),
        ("out_of_service", False, False),
    ],
)
def test_a_birth_lists_what_the_cabinet_enforces(
    state: str, in_service: bool, usable: bool
) -> None:
    assert doors.from_birth(state) == doors.Door(state, in_service=in_service)
    assert doors.usable_in_birth(state) is usable


def test_only_parcels_behind_named_doors_change_clocks() -> None:
    here, elsewhere = f.in_locker(), replace(f.in_locker(), compartment="B01")
    paused_here = f.paused(FAULTED)
    found = doors.door_clock_events(
        [("here", here), ("elsewhere", elsewhere)], usable={DOOR: False}
    )
    assert found == [("here", p.PauseDeadline(FAULTED))]
    # A repair resumes only a clock the fault stopped; a repeat changes nothing.
    assert doors.door_clock_events([(1, paused_here)], usable={DOOR: True}) == [
        (1, p.ResumeDeadline(FAULTED))
    ]
    assert doors.door_clock_events([(1, paused_here)], usable={DOOR: False}) == []
    assert doors.door_clock_events([(1, f.expired())], usable={DOOR: False}) == []


@pytest.mark.parametrize(
    ("was_online", "online", "event"),
    [
        (True, False, p.PauseDeadline(OFFLINE)),
        (None, False, p.PauseDeadline(OFFLINE)),  # never seen, and gone: the clock stops
        (False, True, p.ResumeDeadline(OFFLINE)),
        (True, True, None),
        (None, True, None),
        (False, False, None),
    ],
)
def test_presence_moves_every_live_parcels_clock(
    was_online: bool | None, online: bool, event: object
) -> None:
    found = doors.presence_clock_events(["a", "b"], was_online=was_online, online=online)
    assert found == ([] if event is None else [("a", event), ("b", event)])
    assert doors.presence_moves_clocks(was_online=was_online, online=online) is (event is not None)
