"""Compartments: sizes, door readings, and every compartment state transition in one table."""

# Every change of a compartment's `state` goes through `transition()` below, which reads
# TRANSITIONS and HOLDING: nowhere else in the core assigns `state`. The door (open / closed /
# unknown, as last read from the driver) and the latch expectation (`unlocked_at`) are tracked
# beside the state, not in it: a door can open in any state, and what that means (expected,
# forced, a finished pickup) is decided by `observe_door()` and the flows.

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cabinet.core.errors import IllegalTransition, InvalidInput

# The label on the door, as the contract spells a compartment id.
COMPARTMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")


class Size(StrEnum):
    """Compartment size, smallest first: a compartment fits every parcel size up to its own."""

    S = "S"
    M = "M"
    L = "L"
    XL = "XL"

    @property
    def rank(self) -> int:
        """Return 0 for S up to 3 for XL."""
        return _SIZE_RANK[self]

    def fits(self, parcel: Size) -> bool:
        """Whether a compartment of this size takes a parcel of size `parcel`."""
        return self.rank >= parcel.rank


_SIZE_RANK = {size: rank for rank, size in enumerate(Size)}


class CompartmentState(StrEnum):
    """What a compartment is doing."""

    FREE = "free"  # empty and usable
    RESERVED = "reserved"  # held for a courier's deposit in progress
    OCCUPIED = "occupied"  # holds a parcel, door shut
    OPENING = "opening"  # holds a parcel being taken out: unlocked or queued to unlock
    FAULTED = "faulted"  # the lock did not release: a technician must look (may hold a parcel)
    OUT_OF_SERVICE = "out_of_service"  # taken out by a manager (always empty)


class Trigger(StrEnum):
    """What moves a compartment from one state to another."""

    RESERVE = "reserve"  # a deposit takes this door (its unlock follows)
    DEPOSIT = "deposit"  # the courier confirmed after the door was seen open then closed
    RELEASE = "release"  # the deposit left this door (cancel, larger size, idle courier)
    OPEN_FOR_REMOVAL = "open_for_removal"  # a valid code, a retrieval or a remote open
    EMPTIED = "emptied"  # the door was seen open, then closed: the parcel is out
    UNLOCK_LAPSED = "unlock_lapsed"  # unlocked, but never seen open in time: the parcel is in
    GIVEN_UP = "given_up"  # queued, but its person left before its turn: never unlocked
    LOCK_FAULT = "lock_fault"  # the driver reports no release after its retries
    REPAIRED = "repaired"  # back in service after a fault, empty
    REPAIRED_HOLDING = "repaired_holding"  # back in service after a fault, still with its parcel
    TAKE_OUT = "take_out"  # out of service (compartment.service in_service=false)
    PUT_BACK = "put_back"  # back in service (compartment.service in_service=true)


FREE = CompartmentState.FREE
RESERVED = CompartmentState.RESERVED
OCCUPIED = CompartmentState.OCCUPIED
OPENING = CompartmentState.OPENING
FAULTED = CompartmentState.FAULTED
OUT_OF_SERVICE = CompartmentState.OUT_OF_SERVICE

# (state, trigger) -> new state. Pairs not listed are illegal and raise IllegalTransition.
TRANSITIONS: dict[tuple[CompartmentState, Trigger], CompartmentState] = {
    # deposit
    (FREE, Trigger.RESERVE): RESERVED,
    (RESERVED, Trigger.DEPOSIT): OCCUPIED,
    (RESERVED, Trigger.RELEASE): FREE,
    # A reopen failed with the parcel inside: the courier may still record it (it stays faulted,
    # so no code opens it until a technician has looked) or declare the door empty.
    (FAULTED, Trigger.DEPOSIT): FAULTED,
    (FAULTED, Trigger.RELEASE): FAULTED,
    # taking a parcel out (pickup, retrieval, remote open)
    (OCCUPIED, Trigger.OPEN_FOR_REMOVAL): OPENING,
    (FAULTED, Trigger.OPEN_FOR_REMOVAL): OPENING,  # a manager's remote open retries the lock
    (OPENING, Trigger.EMPTIED): FREE,
    (OPENING, Trigger.UNLOCK_LAPSED): OCCUPIED,  # never "picked up" on a timeout
    (OPENING, Trigger.GIVEN_UP): OCCUPIED,  # the parcel and its code stay live
    # faults: any state, because a lock can fail whenever it is driven
    (FREE, Trigger.LOCK_FAULT): FAULTED,
    (RESERVED, Trigger.LOCK_FAULT): FAULTED,
    (OCCUPIED, Trigger.LOCK_FAULT): FAULTED,
    (OPENING, Trigger.LOCK_FAULT): FAULTED,
    (FAULTED, Trigger.LOCK_FAULT): FAULTED,
    (OUT_OF_SERVICE, Trigger.LOCK_FAULT): FAULTED,
    (FAULTED, Trigger.REPAIRED): FREE,
    (FAULTED, Trigger.REPAIRED_HOLDING): OCCUPIED,
    # service (a compartment that holds a parcel cannot go out of service: HOLDING below)
    (FREE, Trigger.TAKE_OUT): OUT_OF_SERVICE,
    (FAULTED, Trigger.TAKE_OUT): OUT_OF_SERVICE,
    (OUT_OF_SERVICE, Trigger.PUT_BACK): FREE,
}

# Guards, in the same place as the table: whether a trigger needs the compartment to hold a
# parcel before it fires (True) or to be empty (False). A trigger not listed does not care.
HOLDING: dict[Trigger, bool] = {
    Trigger.RESERVE: False,
    Trigger.DEPOSIT: False,
    Trigger.RELEASE: False,
    Trigger.OPEN_FOR_REMOVAL: True,
    Trigger.EMPTIED: True,
    Trigger.UNLOCK_LAPSED: True,
    Trigger.GIVEN_UP: True,
    Trigger.REPAIRED: False,
    Trigger.REPAIRED_HOLDING: True,
    Trigger.TAKE_OUT: False,
    Trigger.PUT_BACK: False,
}

# Whether a compartment in each state holds a parcel afterwards (None: either).
_HOLDS_AFTER: dict[CompartmentState, bool | None] = {
    FREE: False,
    RESERVED: False,
    OCCUPIED: True,
    OPENING: True,
    FAULTED: None,
    OUT_OF_SERVICE: False,
}

# The five states the contract's presence message knows: a door being opened still holds its
# parcel until it is seen closed again.
WIRE_STATE: dict[CompartmentState, str] = {
    CompartmentState.FREE: "free",
    CompartmentState.RESERVED: "reserved",
    CompartmentState.OCCUPIED: "occupied",
    CompartmentState.OPENING: "occupied",
    CompartmentState.FAULTED: "faulted",
    CompartmentState.OUT_OF_SERVICE: "out_of_service",
}


class Door(StrEnum):
    """A door as last read from the driver."""

    OPEN = "open"
    CLOSED = "closed"
    UNKNOWN = "unknown"  # never read since start, or the driver could not read it


class RemovalKind(StrEnum):
    """Why a compartment is being opened to take its parcel out."""

    CODE = "code"  # a typed pickup code
    QR = "qr"  # a QR shown to the scanner
    REMOTE = "remote"  # compartment.open: a pickup on behalf of the recipient
    RETRIEVAL = "retrieval"  # a courier takes it back


@dataclass(frozen=True)
class Removal:
    """Who is taking the parcel out of an OPENING compartment."""

    kind: RemovalKind
    courier_id: str | None = None  # for retrievals
    # Queued behind another person's door: the screen said "yours opens next", so it says when
    # it does (`DoorNowOpening`).
    after_others: bool = False


class DoorChange(StrEnum):
    """What a door reading meant."""

    NONE = "none"  # same as before
    OPENED = "opened"  # opened after the cabinet unlocked it
    FORCED = "forced"  # opened with no unlock issued
    CLOSED = "closed"  # closed (after a forced opening, or its first reading)
    CYCLED = "cycled"  # closed after an opening the cabinet had unlocked: the cycle is done


@dataclass(frozen=True)
class Compartment:
    """One compartment: its layout, its state, its parcel, and its door as last seen."""

    id: str
    size: Size
    low: bool = False  # a door near the floor
    state: CompartmentState = CompartmentState.FREE
    parcel_id: str | None = None
    removal: Removal | None = None  # set while OPENING
    door: Door = Door.UNKNOWN
    # Latch expectation: an unlock was issued at this time and the door has not been seen open
    # since, so an opening now is expected (not forced). Cleared when seen open or on lapse.
    unlocked_at: datetime | None = None
    opened_at: datetime | None = None  # when the door was last seen opening (None while shut)
    opened_by_unlock: bool = False  # the current opening followed an unlock
    left_open_reported: bool = False  # door.left_open already sent for the current opening
    # An occupancy sensor watches inside (KR-CU boards): deposits and pickups then go by what
    # it sees (occupancy.py). `occupied` is its last reading, None until read.
    sensor: bool = False
    occupied: bool | None = None
    mismatch_reported: bool = False  # door.occupancy_mismatch sent for the current disagreement

    def __post_init__(self) -> None:
        if not COMPARTMENT_ID.fullmatch(self.id):
            raise InvalidInput(f"compartment id {self.id!r} must match {COMPARTMENT_ID.pattern}")

    @property
    def wire_state(self) -> str:
        """The state as the contract's presence message spells it."""
        return WIRE_STATE[self.state]


def transition(compartment: Compartment, trigger: Trigger, **changes: Any) -> Compartment:
    """Return `compartment` moved by `trigger` (with `changes`), or raise IllegalTransition."""
    target = TRANSITIONS.get((compartment.state, trigger))
    if target is None:
        raise IllegalTransition(
            f"compartment {compartment.id} is {compartment.state.value}: cannot {trigger.value}",
            state=compartment.state.value,
            action=trigger.value,
        )
    holds = compartment.parcel_id is not None
    needs = HOLDING.get(trigger)
    if needs is not None and needs != holds:
        what = "holds a parcel" if holds else "holds no parcel"
        raise IllegalTransition(
            f"compartment {compartment.id} {what}: cannot {trigger.value}",
            state=compartment.state.value,
            action=trigger.value,
        )
    moved = replace(compartment, state=target, **changes)
    must_hold = _HOLDS_AFTER[target]
    if must_hold is not None and must_hold != (moved.parcel_id is not None):
        # A flow passed the wrong parcel_id: a bug, never something to carry on from.
        raise AssertionError(f"{moved.id} {target.value} with parcel_id={moved.parcel_id!r}")
    if target is not CompartmentState.OPENING and moved.removal is not None:
        moved = replace(moved, removal=None)
    return moved


def observe_door(
    compartment: Compartment, is_open: bool, now: datetime
) -> tuple[Compartment, DoorChange]:
    """Record a door reading and say what it meant (expected, forced, a finished cycle)."""
    c = compartment
    if is_open:
        if c.door is Door.OPEN:
            return c, DoorChange.NONE
        expected = c.unlocked_at is not None
        opened = replace(
            c,
            door=Door.OPEN,
            unlocked_at=None,
            opened_at=now,
            opened_by_unlock=expected,
            left_open_reported=False,
        )
        return opened, DoorChange.OPENED if expected else DoorChange.FORCED
    if c.door is Door.CLOSED:
        return c, DoorChange.NONE
    # `opened_by_unlock` survives an UNKNOWN reading (a restart), so a door seen open before and
    # closed after still completes its cycle.
    change = DoorChange.CYCLED if c.opened_by_unlock else DoorChange.CLOSED
    closed = replace(
        c, door=Door.CLOSED, opened_at=None, opened_by_unlock=False, left_open_reported=False
    )
    return closed, change


def natural_key(compartment_id: str) -> tuple[Any, ...]:
    """Sort key putting A2 before A10."""
    parts = re.split(r"(\d+)", compartment_id)
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p) for p in parts if p)
