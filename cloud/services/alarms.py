"""Alarms: raise them (from cabinet events, the worker's checks, failed notices), tell the site's
managers of new critical ones, list them within a caller's scope, acknowledge and resolve them.

Raising is `raise_alarm`, in the caller's transaction: a repeat of an open alarm of the same
cabinet, door and kind only counts (`cloud.core.alarms.open_key`); a new one is logged, and if
critical, queued in the notice outbox for each manager of the site who gave a phone, after the
site's quiet hours. The worker's `evaluate(now)` raises `cabinet.offline` for a cabinet offline
longer than its site's `offline_alarm_s`, and resolves it when the cabinet is back.

Acknowledging and resolving are acts of a console account: decided by `cloud.core.access.decide`
on the alarm's cabinet, each with an audit row in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from cloud.core import alarms as core
from cloud.core.access import (
    Action,
    AuditEntry,
    Principal,
    Resource,
    ResourceKind,
    cabinet_scope,
    decide,
)
from cloud.db import alarms as db
from cloud.db.cabinets import site_policy
from cloud.db.engine import write_session
from cloud.db.models import Alarm, Cabinet, NoticeOutbox, Site
from cloud.db.notices import enqueue_alarm_notice
from cloud.errors import Conflict, Forbidden, InvalidInput, NotFound
from cloud.services import audit

log = logging.getLogger(__name__)

SYSTEM_ID = "system"  # who resolves an alarm whose cause ended by itself
MAX_NOTE = 2000


def raise_alarm(
    *,
    session: Session,
    cabinet: Cabinet,
    kind: str,
    compartment: str | None = None,
    detail: str = "",
    at: datetime,
    now: datetime,
    seq: int | None = None,
) -> db.Raised:
    """Raise (or repeat) an alarm at `cabinet` seen at `at`; the caller commits."""
    raised = db.raise_alarm(
        session=session,
        cabinet_id=cabinet.id,
        compartment=compartment,
        kind=kind,
        detail=detail,
        at=at,
        seq=seq,
    )
    if not raised.new:
        return raised
    level = core.severity(kind)
    log.warning(
        "alarm %d new: %s (%s) at cabinet %s%s%s",
        raised.alarm_id,
        kind,
        level,
        cabinet.id,
        f" door {compartment}" if compartment else "",
        f": {detail}" if detail else "",
    )
    if kind in core.NOTIFIED:
        _tell_managers(session, cabinet, raised.alarm_id, at=at, now=now)
    return raised


def _tell_managers(
    session: Session, cabinet: Cabinet, alarm_id: int, *, at: datetime, now: datetime
) -> int:
    site = session.get(Site, cabinet.site_id)
    if site is None:
        return 0
    send_at = core.notice_after(now, site_policy(site))
    told = 0
    for account_id, phone in db.site_managers_with_phones(session=session, site_id=site.id):
        told += enqueue_alarm_notice(
            session=session,
            alarm_id=alarm_id,
            account_id=account_id,
            phone=phone,
            seen_at=at,
            send_at=send_at,
            now=now,
        )
    if told == 0:
        log.info("alarm %d: site %s has no manager with a phone to tell", alarm_id, site.id)
    return told


def keypad_lockout(*, session: Session, cabinet: Cabinet, at: datetime, now: datetime, seq: int):
    """Raise the lockout, and the brute-force alarm if lockouts now make the pattern.

    Counts the cabinet's `keypad.lockout` events in the inbox (this one is stored already), by
    the cabinet's clock, so a burst replayed after a network cut is judged by when it happened.
    """
    raise_alarm(
        session=session,
        cabinet=cabinet,
        kind=core.AlarmKind.KEYPAD_LOCKOUT,
        at=at,
        now=now,
        seq=seq,
    )
    rule = core.BRUTE_FORCE
    lockouts = db.recent_lockouts(session=session, cabinet_id=cabinet.id, since=at - rule.window)
    if core.is_brute_force(lockouts, at, rule):
        raise_alarm(
            session=session,
            cabinet=cabinet,
            kind=core.AlarmKind.BRUTE_FORCE,
            detail=core.detail(
                core.AlarmKind.BRUTE_FORCE, count=len(lockouts), minutes=rule.window_s // 60
            ),
            at=at,
            now=now,
            seq=seq,
        )


def notice_failed(*, session: Session, row: NoticeOutbox, now: datetime) -> None:
    """Raise `notice.failed` at the cabinet a notice was about (the dispatcher's transaction)."""
    cabinet_id = None
    if row.alarm_id is not None:
        alarm = session.get(Alarm, row.alarm_id)
        cabinet_id = alarm.cabinet_id if alarm else None
    else:
        cabinet_id = db.parcel_cabinet(session=session, parcel_row_id=row.parcel_row_id)
    cabinet = session.get(Cabinet, cabinet_id) if cabinet_id else None
    if cabinet is None:
        return
    raise_alarm(
        session=session,
        cabinet=cabinet,
        kind=core.AlarmKind.NOTICE_FAILED,
        detail=core.detail(
            core.AlarmKind.NOTICE_FAILED,
            notice=row.kind,
            id=row.id,
            audience=row.audience,
            status=row.status,
        ),
        at=now,
        now=now,
    )


# --- the worker's periodic check ------------------------------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    raised: int = 0  # cabinet.offline alarms raised
    resolved: int = 0  # cabinet.offline alarms resolved (the cabinet is back)


def evaluate(*, session: Session, now: datetime) -> Evaluation:
    """Raise `cabinet.offline` for cabinets offline too long, resolve it for those back; commit."""
    write_session(session)
    raised = resolved = 0
    try:
        offline = db.offline_cabinets(session=session)
        already = db.open_offline_cabinets(session=session, cabinet_ids=[c.id for c in offline])
        for candidate in offline:
            too_long = core.offline_too_long(
                online=False,
                since=candidate.last_seen_at,
                now=now,
                after_s=candidate.offline_alarm_s,
            )
            if candidate.id in already or not too_long:
                continue
            cabinet = session.get(Cabinet, candidate.id)
            assert cabinet is not None
            minutes = max(1, int((now - candidate.last_seen_at).total_seconds() // 60))
            result = raise_alarm(
                session=session,
                cabinet=cabinet,
                kind=core.AlarmKind.CABINET_OFFLINE,
                detail=core.detail(core.AlarmKind.CABINET_OFFLINE, minutes=minutes),
                at=now,
                now=now,
            )
            raised += result.new
        for cabinet_id in db.online_with_open_offline(session=session):
            resolved += db.close_open(
                session=session,
                cabinet_id=cabinet_id,
                kind=core.AlarmKind.CABINET_OFFLINE,
                now=now,
                by=SYSTEM_ID,
                note="back online",
            )
            log.info("alarm cabinet.offline at %s resolved: back online", cabinet_id)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return Evaluation(raised=raised, resolved=resolved)


# --- the console's acts ---------------------------------------------------------------------------


def open_count(*, session: Session, principal: Principal) -> int | None:
    """The open alarms `principal` sees, for the console's header (None: it reads none)."""
    if not decide(principal, Action.READ_ALARMS, Resource(ResourceKind.SYSTEM)).allowed:
        return None
    count = sum(db.open_counts(session=session, scope=cabinet_scope(principal)).values())
    session.rollback()
    return count


def list_for(
    *,
    session: Session,
    principal: Principal,
    open_only: bool = True,
    site_id: str | None = None,
    cabinet_id: str | None = None,
    kind: str | None = None,
    limit: int = 200,
) -> list[db.AlarmRow]:
    """Return the alarms `principal` may read (a carrier's are none: FORBIDDEN)."""
    decision = decide(principal, Action.READ_ALARMS, Resource(ResourceKind.SYSTEM))
    if not decision.allowed:
        raise Forbidden(decision.reason)
    return db.list_alarms(
        session=session,
        scope=cabinet_scope(principal),
        open_only=open_only,
        site_id=site_id,
        cabinet_id=cabinet_id,
        kind=kind,
        limit=limit,
    )


def acknowledge(
    *,
    session: Session,
    principal: Principal,
    alarm_id: int,
    note: str,
    now: datetime,
    by: str | None = None,
) -> Alarm:
    """Mark an alarm seen by `principal` (shown as `by`, e.g. a username) with a note; audit
    it; commit."""
    return _act(session, principal, alarm_id, note, now, by=by, resolve=False)


def resolve(
    *,
    session: Session,
    principal: Principal,
    alarm_id: int,
    note: str,
    now: datetime,
    by: str | None = None,
) -> Alarm:
    """Close an alarm (a repeat after this starts a new one); audit it; commit."""
    return _act(session, principal, alarm_id, note, now, by=by, resolve=True)


def _act(
    session: Session,
    principal: Principal,
    alarm_id: int,
    note: str,
    now: datetime,
    *,
    by: str | None,
    resolve: bool,
) -> Alarm:
    note = " ".join(note.split())
    who = (by or principal.id)[:120]
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"a note is at most {MAX_NOTE} characters")
    write_session(session)
    try:
        alarm = db.lock_alarm(session=session, alarm_id=alarm_id)
        cabinet = session.get(Cabinet, alarm.cabinet_id) if alarm else None
        resource = (
            Resource(ResourceKind.CABINET, cabinet.id, site_id=cabinet.site_id)
            if cabinet is not None
            else None
        )
        decision = decide(principal, Action.HANDLE_ALARMS, resource)
        if not decision.allowed:
            if decision.http_status == 403:
                raise Forbidden(decision.reason)
            raise NotFound("no such alarm")
        assert alarm is not None
        action = "resolve_alarm" if resolve else "acknowledge_alarm"
        if resolve:
            if alarm.cleared_at is not None:
                raise Conflict("the alarm is resolved already")
            alarm.cleared_at, alarm.open_key = now, None
            alarm.resolved_by, alarm.resolve_note = who, note
            if alarm.acked_at is None:  # resolving says it was seen, too
                alarm.acked_at, alarm.acked_by = now, who
        else:
            if alarm.cleared_at is not None:
                raise Conflict("the alarm is resolved already")
            alarm.acked_at, alarm.acked_by, alarm.ack_note = now, who, note
        session.add(alarm)
        audit.record(
            session=session,
            entry=AuditEntry(
                principal_kind=principal.kind,
                principal_id=principal.id,
                action=action,
                resource_kind=ResourceKind.CABINET,
                resource_id=alarm.cabinet_id,
                reason=note,
                detail={"alarm_id": alarm.id, "kind": alarm.kind, "door": alarm.compartment},
            ),
            now=now,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info(
        "alarm %d %s by %s %s",
        alarm_id,
        "resolved" if resolve else "acknowledged",
        principal.kind,
        principal.id,
    )
    session.refresh(alarm)
    return alarm
