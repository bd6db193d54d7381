"""SQL for door reservations: a cabinet's free doors and running reservations by size, and the
reservation rows themselves (`reservation_models.Reservation`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.db.models import CommandOutbox, Compartment
from cloud.db.reservation_models import Reservation

FREE = "free"  # a door's state in the cloud's picture (cloud.core.doors.FREE)


def free_doors_by_size(*, session: Session, cab: str) -> dict[str, int]:
    """Count the cabinet's doors that are free and in service, by size."""
    statement = (
        select(Compartment.size, func.count())
        .where(
            Compartment.cabinet_id == cab,
            Compartment.state == FREE,
            col(Compartment.in_service).is_(True),
        )
        .group_by(Compartment.size)
    )
    return {size: count for size, count in session.exec(statement)}


def held_by_door_size(
    *, session: Session, cab: str, now: datetime, but: str | None = None
) -> dict[str, int]:
    """Count the cabinet's running reservations by the door size each counts against
    (leaving out the shipment `but`'s own)."""
    statement = (
        select(Reservation.door_size, func.count())
        .where(
            Reservation.cabinet_id == cab,
            col(Reservation.ended_at).is_(None),
            Reservation.until > now,
        )
        .group_by(Reservation.door_size)
    )
    if but is not None:
        statement = statement.where(Reservation.parcel_row_id != but)
    return {size: count for size, count in session.exec(statement)}


def get_reservation(*, session: Session, parcel_row_id: str) -> Reservation | None:
    """The shipment's reservation row (running or ended), if it ever had one."""
    return session.get(Reservation, parcel_row_id)


def put_reservation(
    *,
    session: Session,
    parcel_row_id: str,
    cab: str,
    size: str,
    door_size: str,
    until: datetime,
    now: datetime,
) -> Reservation:
    """Record the shipment's (new or renewed) reservation."""
    row = session.get(Reservation, parcel_row_id)
    if row is None:
        row = Reservation(
            parcel_row_id=parcel_row_id,
            cabinet_id=cab,
            size=size,
            door_size=door_size,
            until=until,
            created_at=now,
        )
    row.cabinet_id, row.size, row.door_size, row.until = cab, size, door_size, until
    row.created_at, row.ended_at, row.ended_why = now, None, None
    session.add(row)
    return row


def end_reservation(*, session: Session, row: Reservation, now: datetime, why: str) -> None:
    """Mark a reservation ended (deposited, cancelled, moved, ...)."""
    row.ended_at = now
    row.ended_why = why
    session.add(row)


def end_refused(*, session: Session, command_id: str, now: datetime) -> str | None:
    """A cabinet refused a `compartments.reserve` (its own doors said no: a picture out of
    date): the reservation that command made holds nothing, so it stops counting. Return the
    shipment's row id, or None if the command was not a reservation still running."""
    command = session.get(CommandOutbox, command_id)
    if command is None or command.type != "compartments.reserve":
        return None
    parcel_row_id = str((command.data or {}).get("parcel_id", ""))
    row = session.get(Reservation, parcel_row_id)
    # Only the reservation this command made: a newer one (renewed, moved) has its own command.
    if row is None or row.ended_at is not None or row.created_at > command.created_at:
        return None
    end_reservation(session=session, row=row, now=now, why="refused")
    return parcel_row_id
