"""ERP shipments: announce one (`announce_shipment`), exactly once per Idempotency-Key.

An ERP announces a shipment before the courier brings it (docs/parcel-life.md: `announced`).
The announcement is the core's `Announce` transition, written with its timeline row and webhook
in one transaction. An ERP retries a POST whose answer it never got, so every announce carries an
Idempotency-Key: the first request with a key stores its answer beside the parcel, in the same
commit; a retry with the same key and body gets that answer again and creates nothing; the same
key with another body is refused. Refused requests store nothing, not even their key, so a
corrected retry with the same key goes through.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from cloud import errors
from cloud.core import parcels as core
from cloud.core.access import Action, Principal, decide
from cloud.core.phones import normalize_phone
from cloud.db import parcels
from cloud.db.cabinets import site_policy
from cloud.db.effects import write_effects
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, IdempotencyKey, Site
from cloud.db.parcels import store_parcel
from cloud.db.scoping import cabinet_resource
from cloud.services import queries

# The cabinet takes tracking numbers trimmed, upper case, [A-Z0-9-], at most 40 characters
# (cabinet/core/deposit.py); an announcement must name the parcel the same way or no deposit
# would ever match it.
TRACKING_MAX_CHARS = 40
_TRACKING = re.compile(r"[A-Z0-9-]+")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
IDEMPOTENCY_KEY_MAX_CHARS = 128


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


@dataclass(frozen=True)
class Announced:
    """The answer to an announce: the parcel row's id, and whether this was a replay."""

    parcel_row_id: str
    replayed: bool
    response: dict[str, Any]  # the answer, as JSON (a replay's is the stored one)


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


def request_hash(shipment: ShipmentCreate) -> str:
    """Return the fingerprint a reused Idempotency-Key is compared by."""
    canonical = json.dumps(vars(shipment), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


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
    key = idempotency_key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_CHARS:
        raise InvalidShipment(
            f"the Idempotency-Key header must be 1-{IDEMPOTENCY_KEY_MAX_CHARS} characters",
            field="Idempotency-Key",
            location="header",
        )
    shipment = ShipmentCreate(
        order_no=shipment.order_no.strip(),
        tracking_no=normalize_tracking_no(shipment.tracking_no),
        phone=_phone(shipment.phone.strip()),
        cabinet_id=shipment.cabinet_id.strip(),
    )
    if not shipment.order_no:
        raise InvalidShipment("the order number must not be empty", field="order_no")
    fingerprint = request_hash(shipment)
    api_key_id = principal.id
    try:
        return _announce(session, principal, key, shipment, fingerprint, now)
    except IntegrityError:
        # Another request with the same key committed first (PostgreSQL lets both reach the
        # insert): theirs is the answer, as for any retry.
        session.rollback()
        replay = _replay(session, api_key_id, key, fingerprint)
        session.rollback()
        if replay is None:  # pragma: no cover - the conflict was on another constraint
            raise
        return replay


def _announce(
    session: Session,
    principal: Principal,
    key: str,
    shipment: ShipmentCreate,
    fingerprint: str,
    now: datetime,
) -> Announced:
    session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    write_session(session)
    try:
        replay = _replay(session, principal.id, key, fingerprint)
        if replay is not None:
            session.rollback()
            return replay
        cabinet = session.get(Cabinet, shipment.cabinet_id)
        decision = decide(principal, Action.ANNOUNCE_SHIPMENT, cabinet_resource(cabinet))
        if not decision.allowed:
            # Another site's cabinet reads as a missing one: the key learns nothing of it.
            raise errors.UnknownCabinet(f"no cabinet {shipment.cabinet_id!r}", field="cabinet_id")
        assert cabinet is not None
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
        )
        parcel, effects = core.apply(None, event, now)
        row = store_parcel(session=session, row=None, parcel=parcel, now=now)
        row.owner_key_id = principal.id
        row.owner_carrier_id = principal.carrier_id
        row.owner_merchant_id = principal.merchant_id
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
        view = queries.ParcelView(row, core.erp_state(core.Status(row.status)), deadline=None)
        answer = to_jsonable_python(queries.parcel_record(view))
        session.add(
            IdempotencyKey(
                api_key_id=principal.id,
                key=key,
                request_hash=fingerprint,
                response_status=201,
                response_body=answer,
                created_at=now,
            )
        )
        row_id = row.id
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Announced(parcel_row_id=row_id, replayed=False, response=answer)


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
    return Announced(parcel_row_id=str(body.get("id", "")), replayed=True, response=body)
