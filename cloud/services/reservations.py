"""Hold a door at the shipment's cabinet for an announced parcel, and give it back.

Called inside the shipments service's transactions (announce, update, cancel) and the ingest's
(a deposit ends the reservation it completes). Each change is a `reservations` row and a
command to the cabinet (`compartments.reserve` / `compartments.release`), written in the same
transaction, so the cloud's picture and the command outbox never disagree. The door check runs
under the cabinet's row lock, so two announcements racing for the last free door cannot both
get it.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from cloud import errors
from cloud.core import reservations as core
from cloud.db import reservations as db
from cloud.db.cabinets import lock_cabinets
from cloud.db.commands import enqueue_command
from cloud.db.models import Parcel
from cloud.db.reservation_models import Reservation
from protocol.messages import ParcelIdsData, ReserveCompartmentData, Size

RESERVE = "compartments.reserve"
RELEASE = "compartments.release"


class NoDoorLeft(errors.Conflict):
    """The cabinet has no free door of the size (counting reservations): the shipment's
    `no_door`. The message says how many are free and held; nothing was written."""


class FitsNoDoor(errors.InvalidInput):
    """The announced dimensions fit no door size of any cabinet."""


def lock_doors(*, session: Session, cab: str) -> None:
    """Serialise door checks of one cabinet: take its row lock before anything refers to it
    (`FOR NO KEY UPDATE`, which a foreign-key check's `KEY SHARE` does not wait for)."""
    lock_cabinets(session=session, cabs=[cab])


def parcel_size(
    *, size: str | None, length_mm: int | None, width_mm: int | None, height_mm: int | None
) -> str | None:
    """The size to reserve: the ERP's own, else the one its three dimensions fit (None: the ERP
    gave neither, and no door is reserved). Raise FitsNoDoor for dimensions no door takes."""
    if size is not None:
        return size
    if length_mm is None or width_mm is None or height_mm is None:
        return None
    fitted = core.size_for(length_mm, width_mm, height_mm)
    if fitted is None:
        largest = "x".join(str(mm) for mm in core.DOOR_MM[core.SIZES[-1]])
        raise FitsNoDoor(
            f"a parcel of {length_mm}x{width_mm}x{height_mm} mm fits no locker door (the "
            f"largest, {core.SIZES[-1]}, is {largest} mm inside)",
            field="length_mm",
        )
    return fitted


def reserve(
    *,
    session: Session,
    row: Parcel,
    size: str,
    eta: datetime | None,
    now: datetime,
    until: datetime | None = None,
) -> None:
    """Hold a door of `size` (or larger) at the shipment's cabinet, or raise NoDoorLeft.

    The caller holds the cabinet's lock (`lock_doors`). A shipment reserved before (an update)
    keeps counting once: its own reservation is left out of the count and replaced.
    """
    cab = row.cabinet_id
    free = db.free_doors_by_size(session=session, cab=cab)
    held = db.held_by_door_size(session=session, cab=cab, now=now, but=row.id)
    door = core.door_size(size, free=free, held=held)
    if door is None:
        refusal = core.no_door(cab, size, free=free, held=held)
        raise NoDoorLeft(refusal.message(), field="cabinet_id")
    until = until or core.hold_until(now, eta)
    data = ReserveCompartmentData(
        parcel_id=row.id,  # the deposit comes back under this id: that links the two
        size=Size(size),
        until=until,
        phone=row.phone,
        tracking_no=row.tracking_no,
        carrier_id=row.owner_carrier_id,
    )
    enqueue_command(session=session, cab=cab, type=RESERVE, data=data, now=now)
    db.put_reservation(
        session=session,
        parcel_row_id=row.id,
        cab=cab,
        size=size,
        door_size=door,
        until=until,
        now=now,
    )


def release(*, session: Session, parcel_row_id: str, now: datetime, why: str) -> bool:
    """End the shipment's running reservation, telling its cabinet; False if none ran."""
    held = db.get_reservation(session=session, parcel_row_id=parcel_row_id)
    if held is None or not core.running(held.until, held.ended_at, now):
        return False
    data = ParcelIdsData(parcel_ids=[parcel_row_id])
    enqueue_command(session=session, cab=held.cabinet_id, type=RELEASE, data=data, now=now)
    db.end_reservation(session=session, row=held, now=now, why=why)
    return True


def deposited(*, session: Session, parcel_row_id: str, parcel_id: str, now: datetime) -> None:
    """The shipment is in a locker: its reservation has done its work. Deposited under another
    id (typed in, after the reservation lapsed or elsewhere), the cabinet is told to let go."""
    held = db.get_reservation(session=session, parcel_row_id=parcel_row_id)
    if held is None or held.ended_at is not None:
        return
    if parcel_id != parcel_row_id:
        release(session=session, parcel_row_id=parcel_row_id, now=now, why="deposited")
    else:
        db.end_reservation(session=session, row=held, now=now, why="deposited")


def held(*, session: Session, parcel_row_id: str, now: datetime) -> Reservation | None:
    """The shipment's running reservation, if one runs."""
    row = db.get_reservation(session=session, parcel_row_id=parcel_row_id)
    if row is None or not core.running(row.until, row.ended_at, now):
        return None
    return row


def held_ever(*, session: Session, parcel_row_id: str) -> Reservation | None:
    """The shipment's reservation row, running or ended (a deposit may come in after `until`:
    the cabinet keeps a reservation a courier is using)."""
    return db.get_reservation(session=session, parcel_row_id=parcel_row_id)
