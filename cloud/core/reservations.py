"""Doors held for announced shipments, as the cloud counts them: which size, whether one is free.

Pure. When an ERP announces a shipment with its size (or its dimensions, `size_for`), the
shipments service asks `door_size` whether the cabinet still has a door for it, in the cloud's
picture: the doors its last birth and events say are free and in service, less the doors that
running reservations already count against. Each reservation counts against one door of the
smallest size that fits it and is not all counted already, as the cabinet itself allocates
(cabinet/core/allocation.py), so the cloud never promises a door the cabinet cannot give.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

SIZES = ("S", "M", "L", "XL")  # smallest first, as the contract's `Size`

# The inside of each door size, in mm (width, depth, height), in the usual Chinese locker
# cabinet: the same width and depth, taller doors for larger sizes. A parcel fits a door when,
# laid any way round, each of its sides fits (its sides and the door's compared largest first).
DOOR_MM: dict[str, tuple[int, int, int]] = {
    "S": (450, 380, 80),
    "M": (450, 380, 190),
    "L": (450, 380, 300),
    "XL": (600, 450, 450),
}

# How long a door is held when the ERP gives no expected arrival, and how long past the
# expected arrival: a courier is seldom more than a day late, and a held door is a door fewer.
DEFAULT_HOLD = timedelta(hours=72)
GRACE_AFTER_ETA = timedelta(hours=24)
MAX_HOLD = timedelta(days=14)


def size_for(length_mm: int, width_mm: int, height_mm: int) -> str | None:
    """The smallest door size a parcel of these sides fits, or None: it fits no door."""
    sides = sorted((length_mm, width_mm, height_mm), reverse=True)
    for size in SIZES:
        door = sorted(DOOR_MM[size], reverse=True)
        if all(side <= room for side, room in zip(sides, door, strict=True)):
            return size
    return None


def fits(door: str, parcel: str) -> bool:
    """Whether a door of size `door` takes a parcel of size `parcel`."""
    return SIZES.index(door) >= SIZES.index(parcel)


def door_size(size: str, *, free: Mapping[str, int], held: Mapping[str, int]) -> str | None:
    """The door size a new reservation of `size` counts against, or None: none is left.

    `free` counts the cabinet's free, in-service doors by size; `held` the running
    reservations by the door size they count against.
    """
    for door in SIZES[SIZES.index(size) :]:
        if free.get(door, 0) - held.get(door, 0) > 0:
            return door
    return None


@dataclass(frozen=True)
class NoDoor:
    """Why a reservation cannot be made: what is free and held at the cabinet, for the ERP."""

    cabinet_id: str
    size: str
    free: int  # free doors of the size or larger
    held: int  # of those, already held for other shipments

    def message(self) -> str:
        return (
            f"no_door: cabinet {self.cabinet_id} has no free door of size {self.size} or larger "
            f"({self.free} free, {self.held} of them reserved for other shipments); announce "
            "it to another cabinet, or later"
        )


def no_door(
    cabinet_id: str, size: str, *, free: Mapping[str, int], held: Mapping[str, int]
) -> NoDoor:
    """Describe the refusal `door_size` implies."""
    larger = SIZES[SIZES.index(size) :]
    return NoDoor(
        cabinet_id=cabinet_id,
        size=size,
        free=sum(free.get(s, 0) for s in larger),
        held=sum(held.get(s, 0) for s in larger),
    )


def hold_until(now: datetime, eta: datetime | None) -> datetime:
    """Until when a door is held: a day past the expected arrival, else three days from now;
    never more than `MAX_HOLD` ahead, nor in the past."""
    until = (eta + GRACE_AFTER_ETA) if eta is not None else now + DEFAULT_HOLD
    return min(max(until, now + GRACE_AFTER_ETA), now + MAX_HOLD)


def running(until: datetime, ended_at: datetime | None, now: datetime) -> bool:
    """Whether a reservation still holds its door at `now`."""
    return ended_at is None and until > now
