"""Occupancy sensors (KR-CU boards): what a compartment's sensor says, and what it means.

Only compartments with `sensor=True` have one; every rule here leaves the others alone, so a
mixed cabinet (8A/80 doors without sensors, KR-CU doors with) runs each door by what it has.

- A deposit is confirmed only when the sensor sees something inside (deposit.confirm).
- A removal (pickup, retrieval, remote open) is finished only when the door shuts on an empty
  compartment; shut with the parcel still inside, the parcel stays live, its code still good,
  and the person at the screen is told (`parcel_left_inside`).
- A shut door whose sensor disagrees with the record is an alarm, `door.occupancy_mismatch`,
  once per disagreement: something inside a free (or out-of-service) compartment, or nothing
  inside one that holds a parcel (taken by force, or a sensor stuck at "empty").

A sensor not yet read (None) is never held against anyone: it neither blocks a deposit nor keeps a
parcel, and raises nothing.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from cabinet.core import effects as fx
from cabinet.core.compartments import Compartment, CompartmentState, Door, Trigger, transition
from cabinet.core.effects import Effect, Log, Show
from cabinet.core.screens import ParcelStillInside
from cabinet.core.state import Cabinet

# States in which the record says what should be inside (no one is at the door).
_SETTLED_EMPTY = (CompartmentState.FREE, CompartmentState.OUT_OF_SERVICE)
_SETTLED_HOLDING = (CompartmentState.OCCUPIED,)


def seen_empty(compartment: Compartment) -> bool:
    """Whether a sensor watches this compartment and last saw nothing in it."""
    return compartment.sensor and compartment.occupied is False


def seen_full(compartment: Compartment) -> bool:
    """Whether a sensor watches this compartment and last saw something in it."""
    return compartment.sensor and compartment.occupied is True


def observed(cabinet: Cabinet, compartment_id: str, occupied: bool) -> list[Effect]:
    """Record a sensor reading; a shut, settled door that disagrees raises the alarm."""
    compartment = cabinet.compartment(compartment_id)
    if not compartment.sensor:
        return [Log(f"occupancy reading for {compartment_id}, which has no sensor: ignored")]
    cabinet.compartments[compartment_id] = replace(compartment, occupied=occupied)
    return check(cabinet, compartment_id)


def check(cabinet: Cabinet, compartment_id: str) -> list[Effect]:
    """Raise `door.occupancy_mismatch` once if a shut, settled door's sensor disagrees."""
    c = cabinet.compartments[compartment_id]
    if not c.sensor or c.occupied is None:
        return []
    expected: str | None = None
    if c.door is Door.CLOSED and c.unlocked_at is None:
        if c.state in _SETTLED_EMPTY and c.occupied:
            expected = "empty"
        elif c.state in _SETTLED_HOLDING and not c.occupied:
            expected = "parcel"
    if expected is None:
        if c.mismatch_reported and _agrees(c):
            cabinet.compartments[compartment_id] = replace(c, mismatch_reported=False)
        return []
    if c.mismatch_reported:
        return []
    cabinet.compartments[compartment_id] = replace(c, mismatch_reported=True)
    sensed = "occupied" if c.occupied else "empty"
    return [fx.door_occupancy_mismatch(compartment=c.id, expected=expected, sensed=sensed)]


def _agrees(c: Compartment) -> bool:
    holds = c.parcel_id is not None
    return bool(c.occupied) == holds


def parcel_left_inside(cabinet: Cabinet, compartment_id: str, now: datetime) -> list[Effect]:
    """A removal's door shut on a full compartment: the parcel stays, its code still opens it."""
    compartment = cabinet.compartments[compartment_id]
    cabinet.compartments[compartment_id] = transition(compartment, Trigger.UNLOCK_LAPSED)
    return [
        Log(f"door {compartment_id} shut with the parcel still inside: it stays live"),
        Show(ParcelStillInside(compartment_id)),
    ]
