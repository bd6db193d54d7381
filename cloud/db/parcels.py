"""Parcels: the core's view of a row and back, lookups by id, tracking number and phone."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, union_all
from sqlmodel import Session, col, select

from cloud.core import expiry
from cloud.core import parcels as core
from cloud.core.pauses import Pause, PauseReason
from cloud.core.policies import SitePolicy
from cloud.db.bulk import among, update_rows
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


def parcel_values(
    parcel: core.Parcel, now: datetime, policy: SitePolicy | None = None
) -> dict[str, Any]:
    """Return the parcel row's columns for the core's `parcel`, but its id and created_at.

    With its site's `policy`, `due_check_at` is when the expiry scan must judge it next (its
    next reminder or deadline); without, NULL: the next scan judges it.
    """
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
        # Every write sets it afresh (a deposit, a resume, a reminder sent): nothing the scan
        # judged before stands for a changed parcel.
        "due_check_at": expiry.check_at(parcel, policy, now) if policy is not None else None,
        "updated_at": now,
    }


def new_parcel_id(parcel: core.Parcel) -> str:
    """The row id of a new parcel: the cabinet's parcel_id if it named one, else a ULID."""
    return parcel.parcel_id or new_id()


def store_parcel(
    *,
    session: Session,
    row: Parcel | None,
    parcel: core.Parcel,
    now: datetime,
    policy: SitePolicy | None = None,
) -> Parcel:
    """Write the core's `parcel` into `row` (None: a new row named by its parcel_id or a ULID);
    with its site's `policy`, its next expiry check too (`parcel_values`)."""
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
    for name, value in parcel_values(parcel, now, policy).items():
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


@dataclass(frozen=True)
class DepositReads:
    """What deciding a batch of deposits needs from the database (`deposit_reads`)."""

    taken: set[str]  # the parcel_ids asked for that a parcel row has already
    announced: set[str]  # the tracking numbers asked for that an announcement waits for
    live_hashes: dict[str, set[str]]  # each cabinet asked for: its live parcels' code hashes


def deposit_reads(
    *,
    session: Session,
    parcel_ids: Iterable[str] = (),
    tracking_nos: Iterable[str] = (),
    cabs: Iterable[str] = (),
) -> DepositReads:
    """Read in one query which `parcel_ids` exist, which `tracking_nos` are announced, and the
    live code hashes of `cabs` (one row per cabinet, its hashes joined by the database).

    One round trip and one statement text (`bulk.among`) instead of three whose text changed
    with every batch; the hashes come as one string per cabinet, not a row each.
    """
    parcel_ids, tracking_nos, cabs = set(parcel_ids), set(tracking_nos), sorted(set(cabs))
    found = DepositReads(set(), set(), {cab: set() for cab in cabs})
    dialect = session.connection().dialect.name
    parcels = Parcel.__table__.c  # type: ignore[attr-defined]
    parts = []
    if parcel_ids:
        parts.append(
            select(literal("taken"), parcels.parcel_id, literal("")).where(
                among(parcels.parcel_id, parcel_ids, dialect=dialect)
            )
        )
    if tracking_nos:
        parts.append(
            select(literal("announced"), parcels.tracking_no, literal("")).where(
                among(parcels.tracking_no, tracking_nos, dialect=dialect),
                parcels.status == core.Status.ANNOUNCED.value,
            )
        )
    if cabs:
        parts.append(
            select(
                literal("live"), parcels.cabinet_id, func.aggregate_strings(parcels.code_hash, " ")
            )
            .where(
                among(parcels.cabinet_id, cabs, dialect=dialect),
                parcels.status.in_(LIVE_STATUSES),
                parcels.code_hash.is_not(None),
            )
            .group_by(parcels.cabinet_id)
        )
    if not parts:
        return found
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    for kind, key, hashes in core_rows(session, statement):
        if kind == "taken":
            found.taken.add(key)
        elif kind == "announced":
            found.announced.add(key)
        elif hashes:  # a code hash is "hmac-sha256:" and hex: no space in one
            found.live_hashes[key].update(hashes.split(" "))
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


def expiry_candidates(
    *, session: Session, site_id: str, due_by: datetime | None, after_id: str | None, limit: int
) -> list[Parcel]:
    """The site's parcels in a locker whose `due_check_at` is unset or not after `due_by` (every
    one if `due_by` is None), by id after `after_id`, at most `limit`; locked for this
    transaction, skipping rows another holds (they are being changed: the next scan sees them)."""
    statement = (
        select(Parcel)
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .where(Cabinet.site_id == site_id, Parcel.status == core.Status.IN_LOCKER.value)
    )
    if due_by is not None:
        statement = statement.where(
            col(Parcel.due_check_at).is_(None) | (col(Parcel.due_check_at) <= due_by)
        )
    if after_id is not None:
        statement = statement.where(col(Parcel.id) > after_id)
    statement = (
        statement.order_by(col(Parcel.id))
        .limit(limit)
        .with_for_update(skip_locked=True, of=Parcel)
        .execution_options(populate_existing=True)
    )
    return list(session.exec(statement))


def set_due_checks(*, session: Session, checks: dict[str, datetime]) -> None:
    """Write each parcel's next `due_check_at` (row id -> when), in one statement."""
    rows = [{"id": row_id, "due_check_at": at} for row_id, at in checks.items()]
    update_rows(session.connection(), Parcel.__table__, rows, key=["id"])


def earliest_due_check(*, session: Session, site_id: str) -> datetime | None:
    """The earliest `due_check_at` among the site's parcels in a locker (None: none is set)."""
    statement = (
        select(func.min(Parcel.due_check_at))
        .join(Cabinet, col(Cabinet.id) == col(Parcel.cabinet_id))
        .where(Cabinet.site_id == site_id, Parcel.status == core.Status.IN_LOCKER.value)
    )
    return session.exec(statement).one()


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
