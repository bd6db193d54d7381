"""Doors held for announced parcels: `compartments.reserve` / `compartments.release`.

The cloud reserves a door when an ERP announces a shipment with its size, so the courier who
brings it finds one free. A reservation names a compartment that stays FREE (nothing is behind
it and no unlock is pending), but no other deposit is given it (`unheld` is what allocation sees).
It ends when its parcel is deposited (`deposit`), when the cloud releases it, or at `until`
(`lapse`, on every Tick: the journal keeps reservations in the snapshot, so a restart keeps them
and a lapsed one is dropped at the first Tick after it).

If the held door stops being usable (taken out of service, faulted, opened by a manager), the
deposit takes another free door that fits when the courier comes; the reservation still counts
for one door of its size.
"""

from __future__ import annotations

from datetime import datetime

from cabinet.core.allocation import allocate, usable
from cabinet.core.compartments import Compartment
from cabinet.core.effects import Effect
from cabinet.core.errors import IllegalTransition, InvalidInput
from cabinet.core.inputs import CompartmentsRelease, CompartmentsReserve
from cabinet.core.state import Cabinet, Reservation


class NoDoorToReserve(IllegalTransition):
    """Every door of the size (and larger) is taken or held: the reserve command is refused."""


def held_doors(cabinet: Cabinet, now: datetime, *, but: str | None = None) -> frozenset[str]:
    """The compartments held by reservations still running at `now` (except parcel `but`'s)."""
    return frozenset(
        r.compartment for r in cabinet.reservations.values() if r.until > now and r.parcel_id != but
    )


def unheld(cabinet: Cabinet, now: datetime, *, but: str | None = None) -> list[Compartment]:
    """The compartments a deposit may be given: every one no running reservation holds."""
    held = held_doors(cabinet, now, but=but)
    return [c for c in cabinet.compartments.values() if c.id not in held]


def reserve(cabinet: Cabinet, inp: CompartmentsReserve, now: datetime) -> list[Effect]:
    """Hold the smallest usable door that fits for `inp.parcel_id` (again: replace its terms)."""
    if inp.until <= now:
        raise InvalidInput(f"compartments.reserve: until {inp.until.isoformat()} is past")
    if inp.parcel_id in cabinet.parcels:
        raise IllegalTransition(
            f"compartments.reserve: parcel {inp.parcel_id} is deposited already",
            action="compartments.reserve",
        )
    tracking_no = inp.tracking_no.strip().upper() if inp.tracking_no else None
    for other in cabinet.reservations.values():
        if tracking_no and other.tracking_no == tracking_no and other.parcel_id != inp.parcel_id:
            raise IllegalTransition(
                f"compartments.reserve: tracking number {tracking_no} is reserved for parcel "
                f"{other.parcel_id}",
                action="compartments.reserve",
            )
    before = cabinet.reservations.get(inp.parcel_id)
    kept = cabinet.compartments.get(before.compartment) if before is not None else None
    candidates = unheld(cabinet, now, but=inp.parcel_id)
    if kept is not None and usable(kept) and kept.size.fits(inp.size):
        door: Compartment | None = kept
    else:
        door = allocate(candidates, inp.size)
    if door is None:
        raise NoDoorToReserve(
            f"compartments.reserve: no free door of size {inp.size.value} or larger "
            f"({len(held_doors(cabinet, now, but=inp.parcel_id))} held for other parcels)",
            state="full",
            action="compartments.reserve",
        )
    cabinet.reservations[inp.parcel_id] = Reservation(
        parcel_id=inp.parcel_id,
        compartment=door.id,
        size=inp.size,
        until=inp.until,
        phone=inp.phone,
        tracking_no=tracking_no,
        carrier_id=inp.carrier_id,
    )
    return []


def release(cabinet: Cabinet, inp: CompartmentsRelease) -> list[Effect]:
    """End these reservations; one not held (lapsed, deposited, never sent) is no error."""
    for parcel_id in inp.parcel_ids:
        cabinet.reservations.pop(parcel_id, None)
    return []


def lapse(cabinet: Cabinet, now: datetime) -> list[Effect]:
    """Drop reservations whose time is up, but the one a courier is depositing right now."""
    session = cabinet.session
    in_use = session.draft.reservation if session is not None else None
    for parcel_id, held in list(cabinet.reservations.items()):
        if held.until <= now and parcel_id != in_use:
            del cabinet.reservations[parcel_id]
    return []


def find(cabinet: Cabinet, tracking_no: str, now: datetime) -> Reservation | None:
    """The running reservation a scanned (normalised) tracking number names, if any."""
    return next(
        (
            r
            for r in cabinet.reservations.values()
            if r.tracking_no == tracking_no and r.until > now
        ),
        None,
    )


def door_for(cabinet: Cabinet, held: Reservation, now: datetime) -> Compartment | None:
    """The door to open for a reserved parcel: its own if still usable, else another that fits."""
    own = cabinet.compartments.get(held.compartment)
    if own is not None and usable(own):
        return own
    return allocate(unheld(cabinet, now, but=held.parcel_id), held.size)
