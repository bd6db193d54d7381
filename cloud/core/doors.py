"""A compartment's door as the cloud keeps it, and what cabinet events and births do to it.

Pure: the ingest applier (`cloud.services.ingest`) and the presence tracker
(`cloud.worker.presence`) read the rows, ask here, and write what these functions return. The
deadline-clock side (`expiry.compartment_event`, `expiry.presence_event`) is applied to every
live parcel behind a door (or in a cabinet) by `clock_events`.

States are the wire's `CompartmentState` values (the core does not import the protocol).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from cloud.core.expiry import compartment_event, presence_event
from cloud.core.parcels import Parcel, PauseDeadline, ResumeDeadline

FREE = "free"
OCCUPIED = "occupied"
FAULTED = "faulted"
OUT_OF_SERVICE = "out_of_service"

# What a birth may list a door as, that the recipient cannot open: its parcel's clock stops.
UNUSABLE = frozenset({FAULTED, OUT_OF_SERVICE})

K = TypeVar("K")
ClockEvent = PauseDeadline | ResumeDeadline


@dataclass(frozen=True)
class Door:
    """A compartment row's two mutable columns."""

    state: str
    in_service: bool = True


def after_deposit(door: Door) -> Door:
    """A parcel went in."""
    return replace(door, state=OCCUPIED)


def after_left_locker(door: Door) -> Door:
    """A parcel came out (picked up or retrieved): the cabinet saw it go, whatever the cloud
    thinks of the parcel, so the door is free even when the parcel's event is refused."""
    return replace(door, state=FREE)


def after_fault(door: Door) -> Door:
    """`lock.fault`: the door needs a technician."""
    return replace(door, state=FAULTED)


def after_service(door: Door, *, in_service: bool) -> Door:
    """`compartment.service`: taken out, or put back (which clears a fault; a parcel still
    behind the door makes it occupied again, `behind_usable_door`)."""
    state = FREE if in_service and door.state == FAULTED else door.state
    return Door(state=state, in_service=in_service)


def behind_usable_door(door: Door) -> Door:
    """A live parcel is behind a door that works again: the door holds it."""
    return replace(door, state=OCCUPIED)


def from_birth(state: str) -> Door:
    """The door a birth's inventory lists: the cabinet enforces out-of-service itself, and the
    birth says what it enforces."""
    return Door(state=state, in_service=state != OUT_OF_SERVICE)


def usable_in_birth(state: str) -> bool:
    """Whether a recipient can open a door the birth lists in `state`."""
    return state not in UNUSABLE


def door_clock_events(
    parcels: Iterable[tuple[K, Parcel]], *, usable: Mapping[str, bool]
) -> list[tuple[K, ClockEvent]]:
    """Pause or resume the clocks of in-locker parcels behind the doors in `usable`.

    `parcels` are (key, parcel) pairs, the key the caller's handle on the row. A parcel behind a
    door `usable` does not name, or whose clock already says so, yields nothing.
    """
    found = []
    for key, parcel in parcels:
        if parcel.compartment is None or parcel.compartment not in usable:
            continue
        event = compartment_event(parcel, usable=usable[parcel.compartment])
        if event is not None:
            found.append((key, event))
    return found


def presence_moves_clocks(*, was_online: bool | None, online: bool) -> bool:
    """Whether a change of presence pauses or resumes any clock (`presence_clock_events`)."""
    return presence_event(was_online, online) is not None


def presence_clock_events(
    parcels: Iterable[K], *, was_online: bool | None, online: bool
) -> list[tuple[K, ClockEvent]]:
    """Pause (going offline) or resume (back online) the clocks of a cabinet's live parcels."""
    event = presence_event(was_online, online)
    return [] if event is None else [(key, event) for key in parcels]
