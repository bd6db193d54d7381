"""Cabinet presence from the retained `state` topic: online, boot, last seen, birth inventory.

A state is applied only if it supersedes the one the cabinet row holds (`State.supersedes`: a
higher boot wins, within a boot the Will beats the birth), so a late Will of an old connection
never marks a reconnected cabinet offline. The stored state is rebuilt from the row's `online`
and `boot`; the row keeps no state `ts`, so within one boot and one `online` value the newer
delivery wins, which only ever re-applies the same presence.

A new session's birth reconciles the compartments with the inventory it carries (it lists every
compartment: those missing from it are removed; a repeat of the same birth, as the retained
message is handed again to a reconnecting worker, is older than the events applied since and
changes no door), and pauses or resumes the clock of a parcel whose door it
lists as faulted or back; a birth's `health` replaces the doors' counters and may raise
`door.slow_open` (`cloud.services.health`). A change of presence pauses or resumes the
deadline clock of the cabinet's in-locker parcels. Those rules are the core's
(`cloud.core.doors`), and a new session makes its unacked commands due at once
(`commands.resend_now`), all in the same transaction.
Times are those of receipt: the cabinet's clock is not trusted to order presence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.core import doors
from cloud.core import parcels as core
from cloud.core.errors import CoreError
from cloud.core.policies import SitePolicy
from cloud.db import repo
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, Compartment, Parcel, Site
from cloud.services.health import record_health
from cloud.services.ingest import UnknownCabinet
from cloud.services.parcel_step import apply_parcel_event
from cloud.worker.commands import resend_now
from protocol.messages import State

log = logging.getLogger(__name__)

_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PresenceResult:
    """What applying one state did."""

    applied: bool  # False: stale (superseded by what the cloud already holds)
    online: bool | None  # the cabinet's presence afterwards
    compartments_added: int = 0
    compartments_removed: int = 0
    deadlines_changed: int = 0  # in-locker parcels whose clock was paused or resumed
    reconnected: bool = False  # a new session: its unacked commands were made due at once


def stored_state(cabinet: Cabinet) -> State | None:
    """Return the presence the cloud holds for `cabinet` as a State, None if never seen."""
    if cabinet.boot is None or cabinet.online is None:
        return None
    # Not validated: a stored birth has no compartment list, and only boot/online/ts are compared.
    return State.model_construct(
        cab=cabinet.id, online=cabinet.online, boot=cabinet.boot, ts=_LONG_AGO
    )


def apply_state(
    *, session: Session, state: State, received_at: datetime, seal_key: bytes
) -> PresenceResult:
    """Apply a presence message of cabinet `state.cab` received at `received_at`; commit."""
    write_session(session)
    try:
        cabinet = repo.lock_cabinet(session=session, cab=state.cab)
        if cabinet is None:
            raise UnknownCabinet(f"no cabinet {state.cab!r} in the registry")
        was_online, old_boot = cabinet.online, cabinet.boot
        if not state.supersedes(stored_state(cabinet)):
            session.rollback()
            log.info(
                "cabinet %s: stale %s of boot %d ignored (the cloud holds boot %s, %s)",
                state.cab,
                "birth" if state.online else "will",
                state.boot,
                old_boot,
                "online" if was_online else "offline",
            )
            return PresenceResult(applied=False, online=was_online)
        # Only a new session counts: a repeat of the same birth (every worker gets it) does not.
        reconnected = state.online and (was_online is not True or old_boot != state.boot)
        if was_online is not state.online or cabinet.presence_since is None:
            cabinet.presence_since = received_at  # the console's "online/offline since"
        cabinet.online = state.online
        cabinet.boot = state.boot
        if state.firmware is not None:
            cabinet.firmware = state.firmware
        cabinet.last_seen_at = received_at
        session.add(cabinet)
        added = removed = 0
        # Only a new session's birth says what the doors are now. A repeat of a birth already
        # applied (every worker gets it, and the broker hands the retained one again to each
        # worker that reconnects) is a picture from before the events applied since: a parcel
        # picked up after it would be put back behind its door (found by `locker chaos`).
        if state.compartments is not None and reconnected:
            added, removed = _reconcile(session, cabinet.id, state)
        if state.health is not None:
            # After the inventory: a door the birth just added is there to hang its alarm on.
            record_health(
                session=session,
                cabinet=cabinet,
                health=state.health,
                at=received_at,
                now=received_at,
            )
        if reconnected:
            resend_now(session=session, cab=cabinet.id)
        changed = 0
        if state.compartments is not None and reconnected:
            changed += _fault_deadlines(session, cabinet, state, received_at, seal_key)
        changed += _presence_deadlines(
            session, cabinet, was_online, state.online, received_at, seal_key
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info(
        "cabinet %s %s (boot %d)", state.cab, "online" if state.online else "offline", state.boot
    )
    return PresenceResult(
        applied=True,
        online=state.online,
        compartments_added=added,
        compartments_removed=removed,
        deadlines_changed=changed,
        reconnected=reconnected,
    )


def _reconcile(session: Session, cab: str, state: State) -> tuple[int, int]:
    """Make the cabinet's compartments those of the birth inventory; return (added, removed)."""
    known = repo.compartments_by_id(session=session, cab=cab)
    listed = {info.id: info for info in state.compartments or ()}
    added = 0
    for compartment_id, info in listed.items():
        row = known.get(compartment_id)
        if row is None:
            row = Compartment(cabinet_id=cab, id=compartment_id, size=info.size.value)
            added += 1
        door = doors.from_birth(info.state.value)
        row.size = info.size.value
        row.state, row.in_service = door.state, door.in_service
        session.add(row)
    gone = [row for compartment_id, row in known.items() if compartment_id not in listed]
    for row in gone:
        log.warning(
            "cabinet %s: compartment %s is not in its birth inventory: removed", cab, row.id
        )
        session.delete(row)
    return added, len(gone)


def _presence_deadlines(
    session: Session,
    cabinet: Cabinet,
    was_online: bool | None,
    online: bool,
    now: datetime,
    seal_key: bytes,
) -> int:
    """Pause or resume the clocks of the cabinet's live parcels as its presence changed."""
    if not doors.presence_moves_clocks(was_online=was_online, online=online):
        return 0  # no read of the parcels
    live = repo.live_parcels(session=session, cab=cabinet.id)
    found = doors.presence_clock_events(live, was_online=was_online, online=online)
    return _apply_clocks(session, cabinet, found, now, seal_key)


def _fault_deadlines(
    session: Session, cabinet: Cabinet, state: State, now: datetime, seal_key: bytes
) -> int:
    """Pause or resume the clocks of parcels behind doors the birth lists as faulted or not.

    The `lock.fault` and `compartment.service` events do the same, but a door repaired while
    the cabinet was offline is known from the birth first (its event follows and finds nothing
    left to do).
    """
    usable = {info.id: doors.usable_in_birth(info.state.value) for info in state.compartments or ()}
    live = repo.live_parcels(session=session, cab=cabinet.id)
    found = doors.door_clock_events(
        [(row, repo.parcel_to_core(row)) for row in live], usable=usable
    )
    return _apply_clocks(session, cabinet, found, now, seal_key)


def _apply_clocks(
    session: Session,
    cabinet: Cabinet,
    found: list[tuple[Parcel, core.PauseDeadline | core.ResumeDeadline]],
    now: datetime,
    seal_key: bytes,
) -> int:
    """Apply the core's pauses and resumes; return how many applied."""
    if not found:
        return 0
    policy = _policy(session, cabinet)
    return sum(
        _apply_clock(session, cabinet, row, event, policy, now, seal_key) for row, event in found
    )


def _apply_clock(
    session: Session,
    cabinet: Cabinet,
    row: Parcel,
    event: core.PauseDeadline | core.ResumeDeadline,
    policy: SitePolicy,
    now: datetime,
    seal_key: bytes,
) -> int:
    """Apply a pause or resume to one parcel in a savepoint; return 1 if it applied, else 0."""
    try:
        with session.begin_nested():
            apply_parcel_event(
                session=session, row=row, event=event, policy=policy, seal_key=seal_key, now=now
            )
    except CoreError as err:
        # A resume without a pause (the parcel arrived while offline) is nothing to do.
        log.info("cabinet %s parcel %s: %s", cabinet.id, row.parcel_id, err)
        return 0
    return 1


def _policy(session: Session, cabinet: Cabinet) -> SitePolicy:
    site = session.get(Site, cabinet.site_id)
    if site is None:  # pragma: no cover - the foreign key forbids it
        raise LookupError(f"cabinet {cabinet.id!r} has no site")
    return repo.site_policy(site)


class PresenceTracker:
    """Applies presence messages with sessions of its own engine."""

    def __init__(self, *, engine: Engine, seal_key: bytes) -> None:
        self.engine = engine
        self.seal_key = seal_key

    def handle(self, state: State, received_at: datetime) -> PresenceResult | None:
        """Apply one state; a state of an unknown cabinet is logged and dropped (None)."""
        with Session(self.engine) as session:
            try:
                return apply_state(
                    session=session, state=state, received_at=received_at, seal_key=self.seal_key
                )
            except UnknownCabinet as err:
                log.warning("dropped a state message: %s", err)
                return None
