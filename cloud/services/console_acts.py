"""What a person does from the console's cabinet page, each checked, reasoned and audited.

Every act asks `decide` first (a cabinet or parcel out of scope is NotFound, as a missing one),
needs a reason (cloud.core.access.REASON_REQUIRED), and writes its change and its audit row in
one transaction: an act that committed always has its row, a refused one never does.

- `open_door`: queues the contract's `compartment.open` (docs/mqtt.md) for the door; the
  cabinet opens it when it gets the command, and its events tell the rest.
- `set_service`: queues `compartment.service`; the door's state changes when the cabinet's
  `compartment.service` event comes back (the page shows it live).
- `extend_deadline`, `cancel_parcel`, `mark_for_return`: the parcel's own transitions
  (`ExtendDeadline`, `StaffCancel`, `MarkForReturn`, docs/parcel-life.md) with their codes,
  retrievals and notices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from cloud import errors
from cloud.core import parcels as core
from cloud.core.access import (
    Action,
    AuditEntry,
    Principal,
    Resource,
    ResourceKind,
    decide,
)
from cloud.core.errors import CoreError
from cloud.db import cabinets, console_reads, parcels
from cloud.db.commands import enqueue_command
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, Compartment, Site
from cloud.db.scoping import parcel_resource
from cloud.services import audit
from cloud.services.parcel_step import apply_parcel_event
from protocol.messages import CompartmentServiceData, OpenCompartmentData

log = logging.getLogger(__name__)

# A remote open that has not reached the cabinet in 10 minutes is dropped: a door opening an
# hour later, when nobody who asked is standing there, is worse than none.
OPEN_COMMAND_TTL_S = 600
REASON_MAX = 500  # the contract's `reason` is at most 500 printable characters
MAX_EXTENSION_H = 24 * 14


class NoReason(errors.InvalidInput):
    """A privileged act without a reason."""


@dataclass(frozen=True)
class Done:
    """What an act did: the command it queued (if any) and the parcel it changed (if any)."""

    command_id: str | None = None
    tracking_no: str | None = None
    deadline: datetime | None = None


def _reason(reason: str) -> str:
    text = " ".join(reason.split())[:REASON_MAX]
    if not text:
        raise NoReason("give a reason: it goes in the audit log", field="reason")
    return text


def _allowed(principal: Principal, action: Action, resource: Resource | None, what: str) -> None:
    decision = decide(principal, action, resource)
    if decision.allowed:
        return
    if decision.http_status == 404:
        raise errors.NotFound(f"no {what}")
    raise errors.Forbidden(decision.reason)


def _cabinet(session: Session, principal: Principal, cab: str, action: Action) -> Cabinet:
    cabinet = session.get(Cabinet, cab)
    resource = None if cabinet is None else Resource(ResourceKind.CABINET, cab, cabinet.site_id)
    _allowed(principal, action, resource, f"cabinet {cab!r}")
    assert cabinet is not None
    return cabinet


def _door(session: Session, cab: str, door: str) -> Compartment:
    compartment = session.get(Compartment, (cab, door))
    if compartment is None:
        raise errors.NotFound(f"no door {door!r} in cabinet {cab!r}", field="door")
    return compartment


def _actor(principal: Principal, username: str) -> str:
    return f"console:{username}"[:128]


def open_door(
    *,
    session: Session,
    principal: Principal,
    username: str,
    cab: str,
    door: str,
    reason: str,
    now: datetime,
) -> Done:
    """Queue `compartment.open` for `door` with its audit row; commit."""
    why = _reason(reason)
    write_session(session)
    try:
        _cabinet(session, principal, cab, Action.OPEN_DOOR_REMOTELY)
        _door(session, cab, door)
        behind = console_reads.parcels_behind_doors(session=session, cab=cab)
        parcel = next((p for p in behind if p.compartment == door), None)
        data = OpenCompartmentData(compartment=door, reason=why, actor=_actor(principal, username))
        command = enqueue_command(
            session=session, cab=cab, type="compartment.open", data=data, now=now
        )
        command.expires_at = now + timedelta(seconds=OPEN_COMMAND_TTL_S)
        detail: dict[str, object] = {"door": door, "command_id": command.id, "by": username}
        if parcel is not None:
            detail["tracking_no"] = parcel.tracking_no
        _audit(session, principal, Action.OPEN_DOOR_REMOTELY, ResourceKind.CABINET, cab, why,
               detail, now)  # fmt: skip
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("console: %s opens %s/%s remotely", username, cab, door)
    return Done(command_id=command.id)


def set_service(
    *,
    session: Session,
    principal: Principal,
    username: str,
    cab: str,
    door: str,
    in_service: bool,
    reason: str,
    now: datetime,
) -> Done:
    """Queue `compartment.service` (out of service, or back) with its audit row; commit."""
    why = _reason(reason)
    write_session(session)
    try:
        _cabinet(session, principal, cab, Action.SET_OUT_OF_SERVICE)
        _door(session, cab, door)
        data = CompartmentServiceData(compartment=door, in_service=in_service)
        command = enqueue_command(
            session=session, cab=cab, type="compartment.service", data=data, now=now
        )
        detail = {"door": door, "in_service": in_service, "command_id": command.id, "by": username}
        _audit(session, principal, Action.SET_OUT_OF_SERVICE, ResourceKind.CABINET, cab, why,
               detail, now)  # fmt: skip
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Done(command_id=command.id)


def _parcel_step(
    *,
    session: Session,
    principal: Principal,
    username: str,
    row_id: str,
    action: Action,
    event_of: object,
    reason: str,
    now: datetime,
    seal_key: bytes,
    detail: dict[str, object],
) -> Done:
    why = _reason(reason)
    write_session(session)
    try:
        row = parcels.lock_parcel_by_id(session=session, row_id=row_id)
        _allowed(principal, action, parcel_resource(session, row), f"parcel {row_id!r}")
        assert row is not None
        cabinet = session.get(Cabinet, row.cabinet_id)
        site = session.get(Site, cabinet.site_id) if cabinet is not None else None
        assert site is not None
        event = event_of(why)  # type: ignore[operator]
        try:
            stored = apply_parcel_event(
                session=session,
                row=row,
                event=event,
                policy=cabinets.site_policy(site),
                seal_key=seal_key,
                now=now,
            )
        except CoreError as exc:
            raise errors.Conflict(f"not possible now: {exc}") from None
        deadline = parcels.parcel_to_core(stored).deadline(now)
        _audit(session, principal, action, ResourceKind.PARCEL, stored.id, why,
               {**detail, "tracking_no": stored.tracking_no, "cabinet_id": stored.cabinet_id,
                "status": stored.status, "by": username}, now)  # fmt: skip
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Done(tracking_no=stored.tracking_no, deadline=deadline)


def extend_deadline(
    *,
    session: Session,
    principal: Principal,
    username: str,
    row_id: str,
    hours: int,
    reason: str,
    now: datetime,
    seal_key: bytes,
) -> Done:
    """Give the parcel `hours` more (1 to 336); commit with its audit row."""
    if not 1 <= hours <= MAX_EXTENSION_H:
        raise errors.InvalidInput(f"extend by 1 to {MAX_EXTENSION_H} hours", field="hours")
    return _parcel_step(
        session=session, principal=principal, username=username, row_id=row_id,
        action=Action.EXTEND_DEADLINE,
        event_of=lambda why: core.ExtendDeadline(seconds=hours * 3600, by=username, reason=why),
        reason=reason, now=now, seal_key=seal_key, detail={"op": "extend", "hours": hours},
    )  # fmt: skip


def cancel_parcel(
    *, session: Session, principal: Principal, username: str, row_id: str, reason: str,
    now: datetime, seal_key: bytes,
) -> Done:  # fmt: skip
    """Call the parcel off (couriers take it back); commit with its audit row."""
    return _parcel_step(
        session=session, principal=principal, username=username, row_id=row_id,
        action=Action.CANCEL_PARCEL,
        event_of=lambda why: core.StaffCancel(by=username, reason=why),
        reason=reason, now=now, seal_key=seal_key, detail={"op": "cancel"},
    )  # fmt: skip


def mark_for_return(
    *, session: Session, principal: Principal, username: str, row_id: str, reason: str,
    now: datetime, seal_key: bytes,
) -> Done:  # fmt: skip
    """Send the parcel back before its deadline; commit with its audit row.

    Audited as a cancel-class act (CANCEL_PARCEL): it ends the recipient's pickup the same way.
    """
    return _parcel_step(
        session=session, principal=principal, username=username, row_id=row_id,
        action=Action.CANCEL_PARCEL,
        event_of=lambda why: core.MarkForReturn(by=username, reason=why),
        reason=reason, now=now, seal_key=seal_key, detail={"op": "mark_for_return"},
    )  # fmt: skip


def _audit(
    session: Session,
    principal: Principal,
    action: Action,
    kind: ResourceKind,
    resource_id: str,
    reason: str,
    detail: dict[str, object],
    now: datetime,
) -> None:
    entry = AuditEntry(principal.kind, principal.id, action, kind, resource_id, reason=reason,
                       detail=detail)  # fmt: skip
    audit.record(session=session, entry=entry, now=now)
