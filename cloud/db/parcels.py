"""Parcels: the core's view of a row and back, lookups by id, tracking number and phone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.core import parcels as core
from cloud.core.pauses import Pause, PauseReason
from cloud.db.models import Cabinet, Parcel
from cloud.db.rows import core_rows, new_id

# Parcels whose pickup code a cabinet still honours: their hashes must stay unique.
LIVE_STATUSES = (core.Status.IN_LOCKER.value,)


def parcel_to_core(row: Parcel) -> core.Parcel:
    """Return the core's view of a parcel row."""
    return core.Parcel(
        status=core.Status(row.status),
        tracking_no=row.tracking_no,
        cabinet_id=row.cabinet_id,
        phone=row.phone,
        order_no=row.order_no,
        parcel_id=row.parcel_id,
        compartment=row.compartment,
        size=row.size,
        courier_id=row.courier_id,
        code_hash=row.code_hash,
        code_generation=row.code_generation,
        announced_at=row.announced_at,
        deposited_at=row.deposited_at,
        clock_started_at=row.clock_started_at,
        window_s=row.window_s,
        window_override_s=row.window_override_s,
        pauses=tuple(_pause_from_json(p) for p in row.pauses or ()),
        reminded_at=row.reminded_at,
        told_deadline=row.told_deadline,
        code_expires_at=row.code_expires_at,
        left_locker_at=row.left_locker_at,
    )


def parcel_deadline(row: Any, now: datetime) -> datetime | None:
    """Return a parcel row's pickup deadline at `now`, as `parcel_to_core(row).deadline(now)`
    does, without making the core parcel (a list page did that for every row)."""
    if row.clock_started_at is None or row.window_s is None:
        return None  # before the deposit: no pauses to read
    pauses = tuple(_pause_from_json(p) for p in row.pauses or ())
    return core.pickup_deadline(row.clock_started_at, row.window_s, pauses, now)


def parcel_values(parcel: core.Parcel, now: datetime) -> dict[str, Any]:
    """Return the parcel row's columns for the core's `parcel`, but its id and created_at."""
    return {
        "status": parcel.status.value,
        "tracking_no": parcel.tracking_no,
        "cabinet_id": parcel.cabinet_id,
        "phone": parcel.phone,
        "order_no": parcel.order_no,
        "parcel_id": parcel.parcel_id,
        "compartment": parcel.compartment,
        "size": parcel.size,
        "courier_id": parcel.courier_id,
        "code_hash": parcel.code_hash,
        "code_generation": parcel.code_generation,
        "announced_at": parcel.announced_at,
        "deposited_at": parcel.deposited_at,
        "clock_started_at": parcel.clock_started_at,
        "window_s": parcel.window_s,
        "window_override_s": parcel.window_override_s,
        "pauses": [_pause_to_json(p) for p in parcel.pauses],
        "reminded_at": parcel.reminded_at,
        "told_deadline": parcel.told_deadline,
        "code_expires_at": parcel.code_expires_at,
        "left_locker_at": parcel.left_locker_at,
        "updated_at": now,
    }


def new_parcel_id(parcel: core.Parcel) -> str:
    """The row id of a new parcel: the cabinet's parcel_id if it named one, else a ULID."""
    return parcel.parcel_id or new_id()


def store_parcel(
    *, session: Session, row: Parcel | None, parcel: core.Parcel, now: datetime
) -> Parcel:
    """Write the core's `parcel` into `row` (None: a new row named by its parcel_id or a ULID)."""
    if row is None:
        row = Parcel(
            id=new_parcel_id(parcel),
            tracking_no=parcel.tracking_no,
            status=parcel.status.value,
            cabinet_id=parcel.cabinet_id,
            phone=parcel.phone,
            created_at=now,
            updated_at=now,
        )
    for name, value in parcel_values(parcel, now).items():
        setattr(row, name, value)
    session.add(row)
    return row


def get_parcel_by_parcel_id(*, session: Session, parcel_id: str) -> Parcel | None:
    """Return the parcel the cabinet named `parcel_id`."""
    return session.exec(select(Parcel).where(Parcel.parcel_id == parcel_id)).first()


def find_announcement(*, session: Session, tracking_no: str) -> Parcel | None:
    """Return the announcement a deposit of `tracking_no` completes (`core.find_announcement`)."""
    rows = session.exec(
        select(Parcel).where(
            Parcel.tracking_no == tracking_no, Parcel.status == core.Status.ANNOUNCED.value
        )
    ).all()
    views = [parcel_to_core(row) for row in rows]
    found = core.find_announcement(views, tracking_no)
    # The core returns one of the views it was given: map it back to its row by identity.
    return next((row for row, view in zip(rows, views, strict=True) if view is found), None)


def announcements(*, session: Session, tracking_no: str) -> Sequence[Parcel]:
    """Return every parcel still announced with `tracking_no`, of whichever client."""
    return session.exec(
        select(Parcel)
        .where(Parcel.tracking_no == tracking_no, Parcel.status == core.Status.ANNOUNCED.value)
        .order_by(col(Parcel.id))
    ).all()


def live_parcels(
    *, session: Session, cab: str, phone: str | None = None, compartment: str | None = None
) -> Sequence[Parcel]:
    """Return a cabinet's parcels whose codes are live, optionally only `phone`'s or a door's."""
    statement = select(Parcel).where(
        Parcel.cabinet_id == cab, col(Parcel.status).in_(LIVE_STATUSES)
    )
    if phone is not None:
        statement = statement.where(Parcel.phone == phone)
    if compartment is not None:
        statement = statement.where(Parcel.compartment == compartment)
    return session.exec(statement.order_by(Parcel.created_at)).all()


def live_code_hashes(*, session: Session, cab: str) -> set[str]:
    """Return the code hashes of a cabinet's live parcels (a new code must differ from all)."""
    statement = select(Parcel.code_hash).where(
        Parcel.cabinet_id == cab,
        col(Parcel.status).in_(LIVE_STATUSES),
        col(Parcel.code_hash).is_not(None),
    )
    return {code_hash for code_hash in session.exec(statement) if code_hash}


def cabinets_holding(*, session: Session, phone: str) -> list[str]:
    """Return the cabinets holding live parcels for `phone`, by id."""
    statement = (
        select(Parcel.cabinet_id)
        .where(Parcel.phone == phone, col(Parcel.status).in_(LIVE_STATUSES))
        .distinct()
        .order_by(Parcel.cabinet_id)
    )
    return list(session.exec(statement))


def parcel_ids_taken(*, session: Session, parcel_ids: Iterable[str]) -> set[str]:
    """Return which of `parcel_ids` a parcel row has already."""
    wanted = sorted(set(parcel_ids))
    if not wanted:
        return set()
    statement = select(Parcel.parcel_id).where(col(Parcel.parcel_id).in_(wanted))
    return {parcel_id for (parcel_id,) in core_rows(session, statement) if parcel_id}


def announced_tracking_nos(*, session: Session, tracking_nos: Iterable[str]) -> set[str]:
    """Return which of `tracking_nos` an announcement (status announced) waits for."""
    wanted = sorted(set(tracking_nos))
    if not wanted:
        return set()
    statement = select(Parcel.tracking_no).where(
        col(Parcel.tracking_no).in_(wanted),
        Parcel.status == core.Status.ANNOUNCED.value,
    )
    return {tracking_no for (tracking_no,) in core_rows(session, statement)}


def live_code_hashes_of(*, session: Session, cabs: Iterable[str]) -> dict[str, set[str]]:
    """`live_code_hashes` of many cabinets in one query: {cabinet: its live code hashes}."""
    wanted = sorted(set(cabs))
    found: dict[str, set[str]] = {cab: set() for cab in wanted}
    if not wanted:
        return found
    statement = select(Parcel.cabinet_id, Parcel.code_hash).where(
        col(Parcel.cabinet_id).in_(wanted),
        col(Parcel.status).in_(LIVE_STATUSES),
        col(Parcel.code_hash).is_not(None),
    )
    for cab, code_hash in core_rows(session, statement):
        if code_hash:
            found[cab].add(code_hash)
    return found


def _pause_to_json(pause: Pause) -> dict[str, Any]:
    return {
        "reason": pause.reason.value,
        "started_at": _iso(pause.started_at),
        "ended_at": _iso(pause.ended_at) if pause.ended_at else None,
    }


def _pause_from_json(data: dict[str, Any]) -> Pause:
    ended = data.get("ended_at")
    return Pause(
        reason=PauseReason(data["reason"]),
        started_at=datetime.fromisoformat(data["started_at"]),
        ended_at=datetime.fromisoformat(ended) if ended else None,
    )


def _iso(at: datetime) -> str:
    return at.isoformat()


# Parcels that still hold their tracking number for their owner: a second one would be ambiguous.
TRACKED_STATUSES = (core.Status.ANNOUNCED.value, core.Status.IN_LOCKER.value)


def tracked_parcel_of_owner(
    *, session: Session, tracking_no: str, carrier_id: str | None, merchant_id: str | None
) -> str | None:
    """Return the row id of the owner's parcel still tracked by `tracking_no`, if any: the
    carrier's if `carrier_id` is given, else the merchant's."""
    owner = (
        Parcel.owner_carrier_id == carrier_id
        if carrier_id is not None
        else Parcel.owner_merchant_id == merchant_id
    )
    statement = select(Parcel.id).where(
        Parcel.tracking_no == tracking_no, col(Parcel.status).in_(TRACKED_STATUSES), owner
    )
    return session.exec(statement).first()


def lock_parcel(*, session: Session, parcel_id: str, skip_locked: bool) -> Parcel | None:
    """Return the parcel the cabinet named `parcel_id`, locked for this transaction;
    `skip_locked`: None at once if another transaction holds it."""
    # populate_existing: the row the lock protects, not a copy the session read before it.
    statement = (
        select(Parcel)
        .where(Parcel.parcel_id == parcel_id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()


def in_locker_at_site(*, session: Session, site_id: str) -> list[Parcel]:
    """Return the parcels in a locker of the site's cabinets."""
    statement = (
        select(Parcel)
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .where(Cabinet.site_id == site_id, Parcel.status == core.Status.IN_LOCKER.value)
    )
    return list(session.exec(statement))


def lock_parcel_by_id(*, session: Session, row_id: str) -> Parcel | None:
    """Return the parcel whose row id or cabinet-made parcel_id is `row_id`, locked for this
    transaction (an ERP's update waits for a deposit being written, and the other way round)."""
    statement = (
        select(Parcel)
        .where((col(Parcel.id) == row_id) | (col(Parcel.parcel_id) == row_id))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.exec(statement).first()
