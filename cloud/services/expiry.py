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


# No parcel of that id: nothing to confirm (the tree's, under this module's old name).
UnknownParcel = errors.UnknownParcel


@dataclass(frozen=True)
class DueCounts:
    """What one `run_due` did."""

    reminded: int = 0
    expired: int = 0
    skipped: int = 0  # due when read, then held or applied by another worker, or refused
    next_due_at: datetime | None = None  # the earliest time something else becomes due
    more: bool = False  # the limit stopped it: call again now


def run_due(
    *, session: Session, now: datetime, seal_key: bytes, limit: int = RUN_DUE_LIMIT
) -> DueCounts:
    """Apply the reminders and expiries due at `now` (up to `limit`), each once, one per commit."""
    reminded = expired = skipped = 0
    more = False
    next_times: list[datetime] = []
    sites = [(site.id, site_policy(site)) for site in _sites(session)]
    session.rollback()
    for site_id, policy in sites:
        rows = _in_locker(session, site_id)
        views = [parcel_to_core(row) for row in rows]
        actions = expiry.due(views, policy, now)
        if (later := expiry.next_due_at(views, policy, now)) is not None:
            next_times.append(later)
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
        next_due_at=min(next_times, default=None),
        more=more,
    )


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


def _in_locker(session: Session, site_id: str) -> list[Parcel]:
    return parcels.in_locker_at_site(session=session, site_id=site_id)
