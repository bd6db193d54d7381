"""ERP shipments over their whole life: announce, read, list, update, cancel, confirm a return.

Every write runs once per Idempotency-Key (`_idempotent`): the same mechanism, the same table.

An ERP announces a shipment before the courier brings it (docs/parcel-life.md: `announced`).
The announcement is the core's `Announce` transition, written with its timeline row and webhook
in one transaction. An ERP retries a POST whose answer it never got, so every announce carries an
Idempotency-Key: the first request with a key stores its answer beside the parcel, in the same
commit; a retry with the same key and body gets that answer again and creates nothing; the same
key with another body is refused. Refused requests store nothing, not even their key, so a
corrected retry with the same key goes through.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from cloud import errors
from cloud.core import parcels as core
from cloud.core.access import Action, Principal, decide, parcel_scope
from cloud.core.errors import IllegalTransition
from cloud.core.phones import normalize_phone
from cloud.db import parcels, reads
from cloud.db.cabinets import site_policy
from cloud.db.effects import write_effects
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, IdempotencyKey, Site
from cloud.db.parcels import store_parcel
from cloud.db.scoping import cabinet_resource, parcel_resource
from cloud.services import queries, reservations
from cloud.services.parcel_step import apply_parcel_event

# The cabinet takes tracking numbers trimmed, upper case, [A-Z0-9-], at most 40 characters
# (cabinet/core/deposit.py); an announcement must name the parcel the same way or no deposit
# would ever match it.
TRACKING_MAX_CHARS = 40
_TRACKING = re.compile(r"[A-Z0-9-]+")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
IDEMPOTENCY_KEY_MAX_CHARS = 128
# What a stored answer was (the idempotency table's response_status): the API's 201 and 200.
CREATED, CHANGED = 201, 200


class InvalidShipment(errors.InvalidInput):
    """The request is malformed: a bad phone, tracking number or key; `field` names it."""


class ShipmentConflict(errors.Conflict):
    """Not possible now: the tracking number is live already, or the key was used."""


@dataclass(frozen=True)
class ShipmentCreate:
    """What announcing a shipment takes (already shaped by the API's schema)."""

    order_no: str
    tracking_no: str
    phone: str
    cabinet_id: str
    length_mm: int | None = None
    width_mm: int | None = None
    height_mm: int | None = None
    weight_g: int | None = None
    courier_company: str | None = None
    window_s: int | None = None  # the pickup window override
    size: str | None = None  # S/M/L/XL: reserve a door of this size (else from the dimensions)
    eta: datetime | None = None  # when the courier is expected: the door is held a day past it


@dataclass(frozen=True)
class ShipmentChange:
    """What an update of an announced shipment may change (None: unchanged)."""

    phone: str | None = None
    cabinet_id: str | None = None
    window_s: int | None = None


@dataclass(frozen=True)
class DoorRequest:
    """What holding a door for a shipment on its way takes (None: the announcement's, or now)."""

    size: str | None = None
    eta: datetime | None = None


@dataclass(frozen=True)
class Announced:
    """The answer to a write: the parcel row's id, and whether this was a replay."""

    parcel_row_id: str
    replayed: bool
    response: dict[str, Any]  # the answer, as JSON (a replay's is the stored one)
    created: bool = True  # a new shipment (the API answers 201), else a change of one


def normalize_tracking_no(text: str) -> str:
    """Return the tracking number as the cabinet keys it, or raise InvalidShipment."""
    tracking_no = text.strip().upper()
    if not tracking_no or len(tracking_no) > TRACKING_MAX_CHARS:
        raise InvalidShipment(
            f"the tracking number must be 1-{TRACKING_MAX_CHARS} characters", field="tracking_no"
        )
    if not _TRACKING.fullmatch(tracking_no):
        raise InvalidShipment(
            "the tracking number may hold only letters, digits and '-'", field="tracking_no"
        )
    return tracking_no


def _phone(text: str) -> str:
    if not _E164.fullmatch(text):
        raise InvalidShipment("the phone must be in E.164 form, e.g. +8613812341234", field="phone")
    try:
        return normalize_phone(text)
    except ValueError as err:
        raise InvalidShipment(f"the phone is not usable: {err}", field="phone") from None


def request_hash(shipment: Any, **about: str) -> str:
    """Return the fingerprint a reused Idempotency-Key is compared by: the request's body and
    what it is about (the operation and the shipment's id), so a key used to cancel one
    shipment cannot replay onto another."""
    canonical = json.dumps(
        {**asdict(shipment), **about}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_key(text: str) -> str:
    key = text.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise InvalidShipment(
            f"the Idempotency-Key header must be 1-{IDEMPOTENCY_KEY_MAX_CHARS} characters",
            field="Idempotency-Key",
            location="header",
        )
    return key


def announce_shipment(
    *,
    session: Session,
    principal: Principal,
    idempotency_key: str,
    shipment: ShipmentCreate,
    now: datetime,
) -> Announced:
    """Announce a shipment once per (API key, Idempotency-Key) for `principal` and commit.

    The parcel is owned by the key's carrier or merchant (only its owner reads it); the cabinet
    must be at one of the key's sites. The answer (`queries.parcel_record`, as JSON) is stored
    beside the parcel for replays, and returned the first time too.
    Raise InvalidShipment / UnknownCabinet / ShipmentConflict with nothing written.
    """
    key = _idempotency_key(idempotency_key)
    shipment = ShipmentCreate(
        order_no=shipment.order_no.strip(),
        tracking_no=normalize_tracking_no(shipment.tracking_no),
        phone=_phone(shipment.phone.strip()),
        cabinet_id=shipment.cabinet_id.strip(),
        length_mm=shipment.length_mm,
        width_mm=shipment.width_mm,
        height_mm=shipment.height_mm,
        weight_g=shipment.weight_g,
        courier_company=(shipment.courier_company or "").strip() or None,
        window_s=shipment.window_s,
        size=shipment.size,
        eta=shipment.eta,
    )
    if not shipment.order_no:
        raise InvalidShipment("the order number must not be empty", field="order_no")
    _check_window(shipment.window_s)
    if shipment.eta is not None and shipment.eta.tzinfo is None:
        raise InvalidShipment(
            "the eta needs a time zone (e.g. 2026-12-05T10:00:00+08:00)", field="eta"
        )
    # A size, or three dimensions, ask for a door to be held (docs/shipments.md#door-reservations).
    size = reservations.parcel_size(
        size=shipment.size,
        length_mm=shipment.length_mm,
        width_mm=shipment.width_mm,
        height_mm=shipment.height_mm,
    )
    fingerprint = request_hash(shipment)

    def write() -> tuple[str, dict[str, Any], bool]:
        return _announce(session, principal, shipment, now, size)

    return _idempotent(session, principal, key, fingerprint, write, now)


def _idempotent(
    session: Session,
    principal: Principal,
    key: str,
    fingerprint: str,
    write: Callable[[], tuple[str, dict[str, Any], bool]],
    now: datetime,
) -> Announced:
    """Run `write` once per (API key, Idempotency-Key) and commit it with its stored answer."""
    api_key_id = principal.id
    try:
        return _once(session, principal, key, fingerprint, write, now)
    except IntegrityError:
        # Another request with the same key committed first (PostgreSQL lets both reach the
        # insert): theirs is the answer, as for any retry.
        session.rollback()
        replay = _replay(session, api_key_id, key, fingerprint)
        session.rollback()
        if replay is None:  # pragma: no cover - the conflict was on another constraint
            raise
        return replay


def _once(
    session: Session,
    principal: Principal,
    key: str,
    fingerprint: str,
    write: Callable[[], tuple[str, dict[str, Any], bool]],
    now: datetime,
) -> Announced:
    session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    write_session(session)
    try:
        replay = _replay(session, principal.id, key, fingerprint)
        if replay is not None:
            session.rollback()
            return replay
        row_id, answer, created = write()
        session.add(
            IdempotencyKey(
                api_key_id=principal.id,
                key=key,
                request_hash=fingerprint,
                response_status=CREATED if created else CHANGED,
                response_body=answer,
                created_at=now,
            )
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Announced(parcel_row_id=row_id, replayed=False, response=answer, created=created)


def _announce(
    session: Session,
    principal: Principal,
    shipment: ShipmentCreate,
    now: datetime,
    size: str | None = None,
) -> tuple[str, dict[str, Any], bool]:
    cabinet = session.get(Cabinet, shipment.cabinet_id)
    decision = decide(principal, Action.ANNOUNCE_SHIPMENT, cabinet_resource(cabinet))
    if not decision.allowed:
        # Another site's cabinet reads as a missing one: the key learns nothing of it.
        raise errors.UnknownCabinet(f"no cabinet {shipment.cabinet_id!r}", field="cabinet_id")
    assert cabinet is not None
    if size is not None:
        reservations.lock_doors(session=session, cab=cabinet.id)  # before the parcel refers to it
    # A tracking number is live once per owner. Another client's live parcel with the
    # same number neither blocks this one (a key announcing first must not lock the real
    # carrier out) nor is named to it; the deposit decides which announcement it completes
    # (cloud.core.access.choose_announcement).
    live = parcels.tracked_parcel_of_owner(
        session=session,
        tracking_no=shipment.tracking_no,
        carrier_id=principal.carrier_id,
        merchant_id=principal.merchant_id,
    )
    if live is not None:
        raise ShipmentConflict(
            f"tracking number {shipment.tracking_no} is already announced or in a locker "
            f"(parcel {live})",
            field="tracking_no",
        )
    event = core.Announce(
        tracking_no=shipment.tracking_no,
        cabinet_id=cabinet.id,
        phone=shipment.phone,
        order_no=shipment.order_no,
        window_s=shipment.window_s,
    )
    parcel, effects = core.apply(None, event, now)
    row = store_parcel(session=session, row=None, parcel=parcel, now=now)
    row.owner_key_id = principal.id
    row.owner_carrier_id = principal.carrier_id
    row.owner_merchant_id = principal.merchant_id
    row.length_mm = shipment.length_mm
    row.width_mm = shipment.width_mm
    row.height_mm = shipment.height_mm
    row.weight_g = shipment.weight_g
    row.courier_company = shipment.courier_company
    site = session.get(Site, cabinet.site_id)
    assert site is not None  # the foreign key guarantees it
    write_effects(
        session=session,
        parcel_row=row,
        effects=effects,
        policy=site_policy(site),
        seal_key=b"",  # an announcement queues no notice, so nothing is sealed
        now=now,
    )
    session.flush()
    if size is not None:
        # A full cabinet refuses the whole announcement (409 no_door): nothing is written.
        reservations.reserve(session=session, row=row, size=size, eta=shipment.eta, now=now)
    return row.id, _answer(row, now), True


def _answer(row: Any, now: datetime) -> dict[str, Any]:
    return dict(to_jsonable_python(queries.parcel_record(queries.parcel_view(row, now))))


def _check_window(window_s: int | None) -> None:
    if window_s is not None and not core.MIN_WINDOW_S <= window_s <= core.MAX_WINDOW_S:
        raise InvalidShipment(
            f"the pickup window must be {core.MIN_WINDOW_S}-{core.MAX_WINDOW_S} seconds",
            field="pickup_window_s",
        )


def _replay(session: Session, api_key_id: str, key: str, fingerprint: str) -> Announced | None:
    stored = session.get(IdempotencyKey, (api_key_id, key))
    if stored is None:
        return None
    if stored.request_hash != fingerprint:
        raise ShipmentConflict(
            "this Idempotency-Key was used for another request: use a new key for a new shipment",
            field="Idempotency-Key",
            location="header",
        )
    body = stored.response_body or {}
    return Announced(
        parcel_row_id=str(body.get("id", "")),
        replayed=True,
        response=body,
        created=stored.response_status in (None, CREATED),
    )


# --- the shipment's life after its announcement ---------------------------------------------------


def update_shipment(
    *,
    session: Session,
    principal: Principal,
    idempotency_key: str,
    shipment_id: str,
    change: ShipmentChange,
    now: datetime,
) -> Announced:
    """Change an announced shipment's phone, cabinet or pickup window, once per key; commit.

    Raise UnknownParcel (not the key's, or none), InvalidShipment / UnknownCabinet (bad input),
    ShipmentConflict (not announced any more), each with nothing written.
    """
    key = _idempotency_key(idempotency_key)
    change = ShipmentChange(
        phone=_phone(change.phone.strip()) if change.phone is not None else None,
        cabinet_id=change.cabinet_id.strip() if change.cabinet_id is not None else None,
        window_s=change.window_s,
    )
    if change == ShipmentChange():
        raise InvalidShipment(
            "an update must change the phone, the cabinet_id or the pickup_window_s", field="phone"
        )
    _check_window(change.window_s)

    def check_cabinet() -> None:
        if change.cabinet_id is not None:
            cabinet = session.get(Cabinet, change.cabinet_id)
            decision = decide(principal, Action.ANNOUNCE_SHIPMENT, cabinet_resource(cabinet))
            if not decision.allowed:
                raise errors.UnknownCabinet(f"no cabinet {change.cabinet_id!r}", field="cabinet_id")

    def write() -> tuple[str, dict[str, Any], bool]:
        event = core.UpdateAnnouncement(
            phone=change.phone, cabinet_id=change.cabinet_id, window_s=change.window_s
        )
        return _step(
            session,
            principal,
            Action.UPDATE_SHIPMENT,
            shipment_id,
            event,
            b"",
            now,
            check_cabinet,
            after=lambda row: _move_reservation(session, row, now),
        )

    fingerprint = request_hash(change, op="update", shipment_id=shipment_id)
    return _idempotent(session, principal, key, fingerprint, write, now)


def cancel_shipment(
    *,
    session: Session,
    principal: Principal,
    idempotency_key: str,
    shipment_id: str,
    reason: str,
    now: datetime,
    seal_key: bytes,
) -> Announced:
    """Cancel the key's shipment (announced, or in a locker: couriers take it back); commit."""
    key = _idempotency_key(idempotency_key)
    event = core.Cancel(reason=reason.strip())
    fingerprint = request_hash(event, op="cancel", shipment_id=shipment_id)
    return _idempotent(
        session,
        principal,
        key,
        fingerprint,
        lambda: _step(
            session,
            principal,
            Action.CANCEL_PARCEL,
            shipment_id,
            event,
            seal_key,
            now,
            after=lambda row: reservations.release(
                session=session, parcel_row_id=row.id, now=now, why="cancelled"
            ),
        ),
        now,
    )


def reserve_door(
    *,
    session: Session,
    principal: Principal,
    idempotency_key: str,
    shipment_id: str,
    size: str | None,
    eta: datetime | None,
    now: datetime,
) -> Announced:
    """Hold a door for the key's announced shipment (it is shipped; `eta` says when it comes),
    once per key; commit. The size is `size`, else what the announcement said (its size or its
    dimensions). Raise UnknownParcel, InvalidShipment (no size known), ShipmentConflict (not
    announced any more) or NoDoorLeft (409 no_door), each with nothing written."""
    key = _idempotency_key(idempotency_key)
    if eta is not None and eta.tzinfo is None:
        raise InvalidShipment("the eta needs a time zone", field="eta")

    def write() -> tuple[str, dict[str, Any], bool]:
        # The cabinet's lock first, as an announcement and a deposit take it: then the parcel's.
        found = queries.find_parcel(session=session, parcel_id=shipment_id)
        if found is not None:
            reservations.lock_doors(session=session, cab=found.cabinet_id)
        row = parcels.lock_parcel_by_id(session=session, row_id=shipment_id)
        decision = decide(principal, Action.UPDATE_SHIPMENT, parcel_resource(session, row))
        if not decision.allowed or row is None or found is None:
            raise errors.UnknownParcel(f"no shipment {shipment_id!r}")
        if row.status != core.Status.ANNOUNCED.value or row.cabinet_id != found.cabinet_id:
            raise ShipmentConflict(
                f"shipment {shipment_id!r} is in status '{row.status}': a door is held only "
                "for an announced shipment",
                field="status",
            )
        held = reservations.held(session=session, parcel_row_id=row.id, now=now)
        wanted = size or reservations.parcel_size(
            size=held.size if held is not None else None,
            length_mm=row.length_mm,
            width_mm=row.width_mm,
            height_mm=row.height_mm,
        )
        if wanted is None:
            raise InvalidShipment(
                "give the size (S, M, L or XL): the announcement had neither a size nor all "
                "three dimensions",
                field="size",
            )
        reservations.reserve(session=session, row=row, size=wanted, eta=eta, now=now)
        session.flush()
        return row.id, _answer(row, now), False

    fingerprint = request_hash(DoorRequest(size, eta), op="reserve", shipment_id=shipment_id)
    return _idempotent(session, principal, key, fingerprint, write, now)


def _move_reservation(session: Session, row: Any, now: datetime) -> None:
    """An announced shipment changed: its held door follows it (a new cabinet is checked like
    an announcement, a 409 no_door there leaves everything as it was); a new phone is sent."""
    held = reservations.held(session=session, parcel_row_id=row.id, now=now)
    if held is None:
        return
    if held.cabinet_id != row.cabinet_id:
        reservations.release(session=session, parcel_row_id=row.id, now=now, why="moved")
        reservations.lock_doors(session=session, cab=row.cabinet_id)
    reservations.reserve(
        session=session, row=row, size=held.size, eta=None, now=now, until=held.until
    )


def confirm_return(
    *,
    session: Session,
    principal: Principal,
    idempotency_key: str,
    shipment_id: str,
    note: str,
    now: datetime,
) -> Announced:
    """Close the key's retrieved shipment: it is back with the sender; commit."""
    key = _idempotency_key(idempotency_key)
    event = core.ConfirmReturn(note=note.strip())
    fingerprint = request_hash(event, op="confirm-return", shipment_id=shipment_id)
    return _idempotent(
        session,
        principal,
        key,
        fingerprint,
        lambda: _step(session, principal, Action.UPDATE_SHIPMENT, shipment_id, event, b"", now),
        now,
    )


def _step(
    session: Session,
    principal: Principal,
    action: Action,
    shipment_id: str,
    event: core.Event,
    seal_key: bytes,
    now: datetime,
    check: Callable[[], None] | None = None,
    after: Callable[[Any], object] | None = None,
) -> tuple[str, dict[str, Any], bool]:
    """Apply `event` to the key's shipment under its row lock, through the core's table, so its
    timeline row and webhook are written with it (`apply_parcel_event`). `check` judges the
    rest of the request once the shipment is known to be the key's (another's stays a 404)."""
    row = parcels.lock_parcel_by_id(session=session, row_id=shipment_id)
    decision = decide(principal, action, parcel_resource(session, row))
    if not decision.allowed or row is None:
        # Another client's shipment answers as a missing one: the key learns nothing of it.
        raise errors.UnknownParcel(f"no shipment {shipment_id!r}")
    if check is not None:
        check()
    cabinet = session.get(Cabinet, row.cabinet_id)
    site = session.get(Site, cabinet.site_id) if cabinet is not None else None
    assert site is not None  # the foreign keys guarantee it
    try:
        apply_parcel_event(
            session=session,
            row=row,
            event=event,
            policy=site_policy(site),
            seal_key=seal_key,
            now=now,
        )
    except IllegalTransition as err:
        state = str(err.status)  # a StrEnum: its value
        raise ShipmentConflict(
            f"shipment {shipment_id!r} is in status '{state}': {type(event).__name__} is not "
            "possible there" + (f" ({err.reason})" if err.reason else ""),
            field="status",
        ) from None
    if after is not None:
        after(row)
    session.flush()
    return row.id, _answer(row, now), False


# --- reads ----------------------------------------------------------------------------------------

MAX_PAGE = 200


@dataclass(frozen=True)
class ShipmentFilter:
    """What a list of shipments is narrowed to (None: any)."""

    status: core.Status | None = None
    site: str | None = None
    cabinet: str | None = None
    changed_since: datetime | None = None
    order_no: str | None = None
    tracking_no: str | None = None


@dataclass(frozen=True)
class ShipmentPage:
    """One page of a list: its parcels, and the cursor of the next page (None: the last)."""

    views: list[queries.ParcelView]
    next_cursor: str | None


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """Return the opaque cursor after a parcel: its sort key, base64url (not a secret: it
    names nothing the reader may not see, and a forged one only moves within its own scope)."""
    raw = json.dumps([created_at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Return the sort key a cursor names, or raise InvalidShipment (field cursor)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None or not isinstance(row_id, str):
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError) as err:
        raise InvalidShipment(
            f"the cursor is not one this API gave: {err}", field="cursor", location="query"
        ) from None
    return created_at, row_id


def list_shipments(
    *,
    session: Session,
    principal: Principal,
    filters: ShipmentFilter,
    cursor: str | None,
    limit: int,
    now: datetime,
) -> ShipmentPage:
    """Return a page of the key's shipments, oldest first, after `cursor`."""
    after = decode_cursor(cursor) if cursor else None
    tracking_no = (
        normalize_tracking_no(filters.tracking_no) if filters.tracking_no is not None else None
    )
    rows = reads.shipments_page(
        session=session,
        scope=parcel_scope(principal),
        after=after,
        limit=min(limit, MAX_PAGE) + 1,  # one more: is there a next page?
        status=filters.status,
        site=filters.site,
        cabinet=filters.cabinet,
        changed_since=filters.changed_since,
        order_no=filters.order_no,
        tracking_no=tracking_no,
    )
    page, more = rows[: min(limit, MAX_PAGE)], len(rows) > min(limit, MAX_PAGE)
    views = [queries.parcel_view(row, now) for row in page]
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return ShipmentPage(views, next_cursor)


def get_shipment(
    *, session: Session, principal: Principal, shipment_id: str, now: datetime
) -> queries.ParcelView:
    """Return the key's shipment by its id (or cabinet-made parcel_id); UnknownParcel if none."""
    row = queries.find_parcel(session=session, parcel_id=shipment_id)
    decision = decide(principal, Action.READ_PARCEL, parcel_resource(session, row))
    if not decision.allowed or row is None:
        raise errors.UnknownParcel(f"no shipment {shipment_id!r}")
    return queries.parcel_view(row, now)
