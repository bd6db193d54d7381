"""Expiry and returns as transactions: reminders, expiries (`run_due`) and return confirmations.

The scheduler calls `run_due(session=s, now=now, seal_key=key)` on a timer; it finds what
`cloud.core.expiry.due` says is due, site by site, and applies each due event in a transaction of
its own holding the parcel's row lock (`FOR UPDATE SKIP LOCKED` on PostgreSQL; `BEGIN IMMEDIATE`
on SQLite, which serialises writers). The locked row is judged again before anything is applied,
so any number of workers may run it at once and each reminder or expiry happens exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from cloud import errors
from cloud.core import expiry
from cloud.core import parcels as core
from cloud.core.errors import CoreError
from cloud.core.policies import SitePolicy
from cloud.db import cabinets, parcels
from cloud.db.cabinets import site_policy
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, Parcel, Site
from cloud.db.parcels import parcel_to_core
from cloud.services.parcel_step import apply_parcel_event

log = logging.getLogger(__name__)

# Parcels changed per call: bounds how long one call keeps a worker from ingesting after a long
# outage left thousands due; the rest is done by the next call (`DueCounts.more`).
RUN_DUE_LIMIT = 500
# Parcels judged per transaction (each chunk's rows are locked while it is judged).
JUDGE_CHUNK = 2000


# No parcel of that id: nothing to confirm (the tree's, under this module's old name).
UnknownParcel = errors.UnknownParcel


@dataclass(frozen=True)
class DueCounts:
    """What one `run_due` did."""

    reminded: int = 0
    expired: int = 0
    skipped: int = 0  # due when read, then held or applied by another worker, or refused
    judged: int = 0  # parcels read and judged (new, changed, or their check time come)
    next_due_at: datetime | None = None  # the earliest time something else becomes due
    more: bool = False  # the limit stopped it: call again now


def run_due(
    *,
    session: Session,
    now: datetime,
    seal_key: bytes,
    limit: int = RUN_DUE_LIMIT,
    full: bool = False,
    chunk: int = JUDGE_CHUNK,
) -> DueCounts:
    """Apply the reminders and expiries due at `now` (up to `limit`), each once, one per commit.

    Only parcels whose `due_check_at` is unset or come are judged (a new or changed parcel, or
    one whose next reminder or deadline has come); each judged parcel not due gets its next
    check time. `full` judges every parcel in a locker, whatever its check time (the worker does
    that about hourly, so a check time made stale by anything the core did not write, such as a
    site's policy edited in the database, is corrected within that bound).
    """
    reminded = expired = skipped = judged = 0
    more = False
    next_times: list[datetime] = []
    sites = [(site.id, site_policy(site)) for site in _sites(session)]
    session.rollback()
    for site_id, policy in sites:
        actions, judged_next, count = _judge(session, site_id, policy, now, full=full, chunk=chunk)
        next_times += judged_next
        judged += count
        if not full and (stored := _earliest_check(session, site_id)) is not None:
            next_times.append(stored)
        session.rollback()  # end the read: each action takes its own write transaction
        for action in actions:
            if reminded + expired + skipped >= limit:
                more = True
                break
            if _apply_due(session, action.parcel_id, policy, seal_key, now):
                if isinstance(action.event, core.Expire):
                    expired += 1
                else:
                    reminded += 1
            else:
                skipped += 1
        if more:
            break
    if reminded or expired:
        log.info("expiry: %d reminded, %d expired, %d skipped", reminded, expired, skipped)
    return DueCounts(
        reminded=reminded,
        expired=expired,
        skipped=skipped,
        judged=judged,
        next_due_at=min(next_times, default=None),
        more=more,
    )


def _judge(
    session: Session, site_id: str, policy: SitePolicy, now: datetime, *, full: bool, chunk: int
) -> tuple[list[expiry.DueAction], list[datetime], int]:
    """Judge the site's parcels due a check, a chunk a transaction: return what is due (oldest
    first), the next times of the rest (whose check times are written meanwhile) and how many
    were judged."""
    actions: list[expiry.DueAction] = []
    next_times: list[datetime] = []
    judged = 0
    after: str | None = None
    while True:
        write_session(session)
        try:
            rows = parcels.expiry_candidates(
                session=session,
                site_id=site_id,
                due_by=None if full else now,
                after_id=after,
                limit=chunk,
            )
            views = [parcel_to_core(row) for row in rows]
            due = expiry.due(views, policy, now)
            due_ids = {action.parcel_id for action in due}
            checks: dict[str, datetime] = {}
            for row, view in zip(rows, views, strict=True):
                if view.parcel_id is not None and view.parcel_id in due_ids:
                    # Due now: applying it rewrites the parcel (clearing this); if the limit
                    # leaves it for later, the next scan still judges it.
                    checks[row.id] = now
                    continue
                later = expiry.check_at(view, policy, now)
                if later is not None:
                    next_times.append(later)
                    checks[row.id] = later
            parcels.set_due_checks(session=session, checks=checks)
            last = rows[-1].id if rows else None  # read before the commit expires the rows
            session.commit()
        except BaseException:
            session.rollback()
            raise
        actions += due
        judged += len(rows)
        if len(rows) < chunk:
            return sorted(actions, key=lambda action: action.due_at), next_times, judged
        after = last


def confirm_return(
    *, session: Session, parcel_id: str, now: datetime, seal_key: bytes, note: str = ""
) -> core.Status:
    """Close a retrieved parcel: the ERP confirms it is back with the sender; commit.

    Raise UnknownParcel, or IllegalTransition if the parcel is not retrieved (nothing changes).
    """
    write_session(session)
    try:
        row = _lock_parcel(session, parcel_id, skip_locked=False)
        if row is None:
            raise UnknownParcel(f"no parcel {parcel_id!r}")
        apply_parcel_event(
            session=session,
            row=row,
            event=core.ConfirmReturn(note=note),
            policy=_policy_of(session, row),
            seal_key=seal_key,
            now=now,
        )
        status = core.Status(row.status)  # read before the commit expires the row
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return status


def _apply_due(
    session: Session, parcel_id: str, policy: SitePolicy, seal_key: bytes, now: datetime
) -> bool:
    """Apply what is due to one parcel under its row lock; commit; return whether it applied."""
    write_session(session)
    try:
        row = _lock_parcel(session, parcel_id, skip_locked=True)
        # Judged again on the locked row: another worker may have applied it since the read.
        again = expiry.due([parcel_to_core(row)], policy, now) if row is not None else []
        if row is None or not again:
            session.rollback()
            return False
        apply_parcel_event(
            session=session,
            row=row,
            event=again[0].event,
            policy=policy,
            seal_key=seal_key,
            now=now,
        )
        session.commit()
    except CoreError as err:
        session.rollback()
        log.warning("expiry of parcel %s refused: %s", parcel_id, err)
        return False
    except BaseException:
        session.rollback()
        raise
    return True


def _lock_parcel(session: Session, parcel_id: str, *, skip_locked: bool) -> Parcel | None:
    return parcels.lock_parcel(session=session, parcel_id=parcel_id, skip_locked=skip_locked)


def _policy_of(session: Session, row: Parcel) -> SitePolicy:
    cabinet = session.get(Cabinet, row.cabinet_id)
    site = session.get(Site, cabinet.site_id) if cabinet else None
    if site is None:  # pragma: no cover - the foreign keys forbid it
        raise LookupError(f"parcel {row.parcel_id!r} has no cabinet or site")
    return site_policy(site)


def _sites(session: Session) -> list[Site]:
    return cabinets.all_sites(session=session)


def _earliest_check(session: Session, site_id: str) -> datetime | None:
    return parcels.earliest_due_check(session=session, site_id=site_id)
