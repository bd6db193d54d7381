"""Ingestion's storage side: store cabinet events once by (cab, seq), apply them in order, once.

The MQTT worker calls, per batch of deliveries for one cabinet:

    stored = store_events(session=s, cab=cab, envelopes=events, now=now)   # commits
    result = apply_pending(session=s, cab=cab, now=now, seal_key=key)      # commits
    publish event-ack {"upto": result.ack_upto}                            # after the commit

`store_events` is what makes an event safe (`INSERT ... ON CONFLICT DO NOTHING`, idempotent);
`apply_pending` runs the core (`cloud.core.ingest.plan`, `cloud.core.parcels.apply`) in one
transaction holding the cabinet's row lock, so any number of workers apply each event exactly
once, in seq order, stopping at a gap until the cabinet resends the missing seq.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.core import parcels as core
from cloud.core.access import (
    FLAG_ANNOUNCEMENT,
    Announcement,
    AuditEntry,
    PrincipalKind,
    ResourceKind,
    choose_announcement,
)
from cloud.core.codes import IssuedCode, RandBelow, issue_code
from cloud.core.errors import CoreError
from cloud.core.expiry import compartment_event
from cloud.core.ingest import Delivery, classify_delivery, contiguous_upto, plan, refusal
from cloud.core.notices import resend_decision
from cloud.core.phones import mask_phone
from cloud.core.policies import SitePolicy
from cloud.db import repo
from cloud.db.engine import write_session
from cloud.db.models import Alarm, Cabinet, Compartment, Courier, InboxEvent, Parcel, Site
from cloud.services import audit
from cloud.services.deposit_batch import DEPOSITED, DepositBatch
from protocol.messages import EventBase

log = logging.getLogger(__name__)

# Events applied per transaction: bounds how long the cabinet's lock is held; the rest waits for
# the next call (`ApplyResult.more`).
APPLY_BATCH = 500


# A stored event being applied: an ORM row, or a plain one (`repo.pending_events`).
StoredRow = InboxEvent | repo.StoredEvent


class UnknownCabinet(LookupError):
    """An event names a cabinet the registry does not have: a foreign message, to be dropped."""


@dataclass(frozen=True)
class ApplyResult:
    """What `apply_pending` did; publish `event-ack` with `ack_upto` after it returned."""

    applied: int  # events applied (anomalies included: they are marked applied too)
    ack_upto: int  # every seq up to this is stored (and so may be acked)
    anomalies: int = 0  # applied events the core refused or that named unknown things
    waiting: int = 0  # stored events behind a gap or beyond the batch
    more: bool = False  # the batch limit stopped it: call again


def store_events(
    *,
    session: Session,
    cab: str,
    envelopes: Sequence[EventBase],
    now: datetime | None = None,
) -> int:
    """Store the events of cabinet `cab` not stored yet; commit; return how many were new.

    Idempotent by (cab, seq): a duplicate is skipped; a different event under a stored seq
    (`Delivery.CONFLICT`) keeps the stored one and is logged as an error.
    """
    now = now or datetime.now(UTC)
    write_session(session)
    try:
        cabinet = repo.get_cabinet(session=session, cab=cab)
        if cabinet is None:
            raise UnknownCabinet(f"no cabinet {cab!r} in the registry")
        new = stage_events(
            session=session,
            by_cab={cab: envelopes},
            received_at={cab: now},
            applied_upto={cab: cabinet.applied_upto},
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return new[cab]


def stage_events(
    *,
    session: Session,
    by_cab: Mapping[str, Sequence[EventBase]],
    received_at: Mapping[str, datetime],
    applied_upto: Mapping[str, int],
) -> dict[str, int]:
    """Insert the not yet stored events of known cabinets, in the caller's transaction.

    One `INSERT ... ON CONFLICT DO NOTHING` for them all, in (cab, seq) order, so concurrent
    writers take the unique index's locks in one order; return how many were new per cabinet.
    An event the core refuses (`cloud.core.ingest.refusal`: a seq no cabinet can have reached,
    a timestamp from the future, against the time it was received) is left out and logged.
    """
    rows = []
    for cab, envelopes in by_cab.items():
        foreign = [e for e in envelopes if e.cab != cab]
        if foreign:
            raise ValueError(f"events of cabinet {foreign[0].cab!r} offered as {cab!r}'s")
        by_seq: dict[int, EventBase] = {}
        for envelope in envelopes:
            why = refusal(
                seq=envelope.seq,
                ts=envelope.ts,
                applied_upto=applied_upto[cab],
                now=received_at[cab],
            )
            if why is not None:
                log.warning(
                    "refused event %s of cabinet %s, seq %d: %s; not stored, not acked",
                    envelope.id,
                    cab,
                    envelope.seq,
                    why,
                )
                continue
            by_seq.setdefault(envelope.seq, envelope)
        rows += [
            {
                "cabinet_id": cab,
                "seq": envelope.seq,
                "event_id": envelope.id,
                "type": envelope.type,  # type: ignore[attr-defined]
                "ts": envelope.ts,
                "data": envelope.data.model_dump(mode="json"),  # type: ignore[attr-defined]
                "received_at": received_at[cab],
                "applied": False,
            }
            for envelope in by_seq.values()
        ]
    rows.sort(key=lambda row: (row["cabinet_id"], row["seq"]))
    inserted = repo.insert_ignore(
        session=session,
        table=InboxEvent.__table__,
        rows=rows,
        conflict_columns=["cabinet_id", "seq"],
        returning=["cabinet_id", "seq"],
    )
    new = set(inserted)
    offered = {(row["cabinet_id"], row["seq"]) for row in rows}
    for cab, envelopes in by_cab.items():
        again = [e for e in envelopes if (cab, e.seq) in offered and (cab, e.seq) not in new]
        _report_redeliveries(session, cab, again)
    per_cab = Counter(c for c, _ in new)
    return {cab: per_cab[cab] for cab in by_cab}


def _report_redeliveries(session: Session, cab: str, envelopes: Sequence[EventBase]) -> None:
    if not envelopes:
        return
    stored = dict(
        session.exec(
            select(InboxEvent.seq, InboxEvent.event_id).where(
                InboxEvent.cabinet_id == cab,
                col(InboxEvent.seq).in_(sorted({e.seq for e in envelopes})),
            )
        ).all()
    )
    for envelope in envelopes:
        if classify_delivery(stored.get(envelope.seq), envelope.id) is Delivery.CONFLICT:
            log.error(
                "CONFLICT: cabinet %s sent event %s as seq %d, which holds event %s; the stored "
                "one is kept (was the cabinet's journal wiped or restored?)",
                cab,
                envelope.id,
                envelope.seq,
                stored[envelope.seq],
            )


def apply_pending(
    *,
    session: Session,
    cab: str,
    now: datetime,
    seal_key: bytes,
    randbelow: RandBelow = secrets.randbelow,
    limit: int = APPLY_BATCH,
) -> ApplyResult:
    """Apply cabinet `cab`'s stored events in seq order, exactly once, in one transaction; commit.

    Holds the cabinet's row lock (`SELECT ... FOR UPDATE`; on SQLite `BEGIN IMMEDIATE`) from the
    read of `applied_upto` to the commit, so a concurrent caller waits and then finds the events
    applied. An event the core refuses is recorded as an anomaly and still marked applied: it
    can never become legal later, and waiting on it would stop the cabinet's stream forever.
    """
    write_session(session)
    try:
        cabinet = repo.lock_cabinet(session=session, cab=cab)
        if cabinet is None:
            raise UnknownCabinet(f"no cabinet {cab!r} in the registry")
        result = apply_locked(
            session=session,
            cabinet=cabinet,
            now=now,
            seal_key=seal_key,
            randbelow=randbelow,
            limit=limit,
        )
        if result.applied:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    return result


def apply_locked(
    *,
    session: Session,
    cabinet: Cabinet,
    now: datetime,
    seal_key: bytes,
    randbelow: RandBelow = secrets.randbelow,
    limit: int = APPLY_BATCH,
    batch: DepositBatch | None = None,
    pending: Sequence[repo.StoredEvent] | None = None,
) -> ApplyResult:
    """Apply what `apply_pending` would, for a cabinet whose row the caller has locked.

    Runs in the caller's transaction and neither commits nor rolls back: a worker applies many
    cabinets in one transaction this way (`cloud.worker.ingest_loop`). With a `batch`, the
    deposits it takes are left in it: the caller must `batch.flush(session)` before committing.
    `pending`, if given, are the cabinet's stored events not applied yet, fewer than `limit`,
    in seq order (`repo.pending_events`, one query for many cabinets).
    """
    cab = cabinet.id
    if pending is not None and len(pending) < limit:
        stored = pending
    else:
        stored = session.exec(
            select(InboxEvent)
            .where(InboxEvent.cabinet_id == cab, InboxEvent.seq > cabinet.applied_upto)
            .order_by(col(InboxEvent.seq))
            .limit(limit)
        ).all()
    step = plan(applied_upto=cabinet.applied_upto, stored=stored, limit=limit)
    # Rows are loaded one batch at a time, but the ack may cover every stored seq: storing,
    # not applying, is what makes an event safe for the cabinet to forget.
    stored_seqs = [row.seq for row in stored]
    if len(stored) >= limit:  # fewer than `limit`: those rows are all there is
        stored_seqs = session.exec(
            select(InboxEvent.seq).where(
                InboxEvent.cabinet_id == cab, InboxEvent.seq > cabinet.applied_upto
            )
        ).all()
    ack_upto = contiguous_upto(stored_seqs, start=cabinet.applied_upto)
    waiting = len(stored_seqs) - len(step.apply)
    if not step.apply:
        return ApplyResult(applied=0, ack_upto=ack_upto, waiting=waiting)
    site = session.get(Site, cabinet.site_id)
    if site is None:  # pragma: no cover - the foreign key forbids it
        raise LookupError(f"cabinet {cab!r} has no site")
    applier = _Applier(
        session=session,
        cabinet=cabinet,
        policy=repo.site_policy(site),
        seal_key=seal_key,
        randbelow=randbelow,
        now=now,
        _live_hashes=batch.live_hashes.get(cab) if batch is not None else None,
        batch=batch,
    )
    anomalies = 0
    for row in step.apply:
        anomaly = applier.apply(row)
        if anomaly is not None:
            anomalies += 1
            log.warning("cabinet %s seq %d (%s): %s", cab, row.seq, row.type, anomaly)
        if batch is not None:  # one UPDATE for the transaction's events, not one each
            batch.mark_applied(row, at=now, anomaly=anomaly[:2000] if anomaly else None)
            continue
        if not isinstance(row, InboxEvent):
            raise TypeError("events read by repo.pending_events are applied with a DepositBatch")
        row.applied = True
        row.applied_at = now
        row.anomaly = anomaly[:2000] if anomaly else None
        session.add(row)
    cabinet_applied_upto = step.applied_upto or cabinet.applied_upto
    if batch is not None:
        batch.advance(cabinet, cabinet_applied_upto)
    else:
        cabinet.applied_upto = cabinet_applied_upto
        session.add(cabinet)
    return ApplyResult(
        applied=len(step.apply),
        ack_upto=ack_upto,
        anomalies=anomalies,
        waiting=waiting,
        more=ack_upto > cabinet_applied_upto,
    )


@dataclass
class _Applier:
    """Applies one stored event of a locked cabinet; returns an anomaly text or None."""

    session: Session
    cabinet: Cabinet
    policy: SitePolicy
    seal_key: bytes
    randbelow: RandBelow
    now: datetime
    # The cabinet's live code hashes, read once per batch and grown with every code issued in it.
    # A hash that stopped being live in the batch stays in: that only ever avoids a free code.
    _live_hashes: set[str] | None = None
    # The transaction's set-based deposits (`cloud.services.deposit_batch`), or None: per event.
    batch: DepositBatch | None = None

    def apply(self, row: StoredRow) -> str | None:
        if self.batch is not None:
            if row.type == DEPOSITED and self._batched_deposit(row):
                return None
            # Whatever comes next reads the database: the batch's rows must be in it by then.
            self.batch.before_other_event(self.session)
        handler = getattr(self, "_" + row.type.replace(".", "_"), None)
        if handler is None:
            return f"unknown event type {row.type!r}"
        try:
            # A savepoint: a refused event leaves none of its rows behind.
            with self.session.begin_nested():
                return handler(row, row.data)
        except (CoreError, ValueError, KeyError) as err:
            return f"{type(err).__name__}: {err}"

    # --- parcels ----------------------------------------------------------------------------------

    def _parcel_deposited(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        existing = repo.get_parcel_by_parcel_id(session=self.session, parcel_id=data["parcel_id"])
        target = existing or self._announcement(data)
        self._transition(row, target, self._deposit(row, data))
        self._set_compartment(data["compartment"], state="occupied")
        return None

    def _announcement(self, data: dict[str, Any]) -> Parcel | None:
        """The announcement this deposit completes, by the stated rule (who-may-do-what.md):
        the announced phone wins only over a courier of the announcing key's carrier; an
        announcement naming another phone is otherwise left announced, and flagged."""
        rows = repo.announcements(session=self.session, tracking_no=data["tracking_no"])
        if not rows:
            return None
        courier = self.session.get(Courier, data["courier_id"])
        courier_carrier = courier.carrier if courier is not None else None
        weighed = [
            Announcement(
                ref=r.id,
                owner_carrier_id=r.owner_carrier_id,
                phone=r.phone,
                announced_at=r.announced_at.timestamp() if r.announced_at else 0.0,
            )
            for r in rows
        ]
        chosen, _how = choose_announcement(
            weighed, courier_carrier_id=courier_carrier, typed_phone=data["phone"]
        )
        for r in rows:
            if chosen is None or r.id != chosen.ref:
                self._flag_announcement(r, data, courier_carrier)
        return next((r for r in rows if chosen is not None and r.id == chosen.ref), None)

    def _flag_announcement(
        self, announcement: Parcel, data: dict[str, Any], courier_carrier: str | None
    ) -> None:
        # For the operator only: the announcing key must not learn where the parcel went.
        entry = AuditEntry(
            PrincipalKind.CABINET,
            self.cabinet.id,
            FLAG_ANNOUNCEMENT,
            ResourceKind.PARCEL,
            announcement.id,
            reason="a deposit of its tracking number did not complete it: the courier is not "
            "of the announcing carrier and typed another phone",
            outcome="flagged",
            detail={
                "parcel_id": data["parcel_id"],
                "courier_id": data["courier_id"],
                "courier_carrier": courier_carrier,
                "owner_key_id": announcement.owner_key_id,
                "owner_carrier_id": announcement.owner_carrier_id,
                "owner_merchant_id": announcement.owner_merchant_id,
            },
        )
        audit.record(session=self.session, entry=entry, now=self.now)

    def _deposit(self, row: StoredRow, data: dict[str, Any]) -> core.Deposit:
        return core.Deposit(
            parcel_id=data["parcel_id"],
            cabinet_id=self.cabinet.id,
            compartment=data["compartment"],
            size=data["size"],
            tracking_no=data["tracking_no"],
            phone=data["phone"],
            courier_id=data["courier_id"],
            at=row.ts,
            code=self._issue_code(),
            window_s=self.policy.pickup_window_s,
        )

    def _batched_deposit(self, row: StoredRow) -> bool:
        """Leave a new parcel's deposit to the batch; False: it takes the per-event path."""
        assert self.batch is not None
        if not self.batch.takes(row.data):
            return False
        try:
            # What `_parcel_deposited` does for a parcel with no row and no announcement.
            after, effects = core.apply(None, self._deposit(row, row.data), self.now)
            self.batch.add(
                parcel=after,
                effects=effects,
                policy=self.policy,
                seal_key=self.seal_key,
                now=self.now,
                seq=row.seq,
            )
        except (CoreError, ValueError, KeyError):
            return False  # the per-event path refuses it again, and records why
        return True

    def _parcel_picked_up(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        event = core.PickUp(
            parcel_id=data["parcel_id"],
            compartment=data["compartment"],
            method=data["method"],
            at=row.ts,
        )
        return self._left_locker(row, data, event)

    def _parcel_retrieved(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        event = core.Retrieve(
            parcel_id=data["parcel_id"],
            compartment=data["compartment"],
            courier_id=data["courier_id"],
            reason=data["reason"],
            at=row.ts,
        )
        return self._left_locker(row, data, event)

    def _left_locker(
        self, row: StoredRow, data: dict[str, Any], event: core.PickUp | core.Retrieve
    ) -> str | None:
        # The door is empty whatever the cloud thinks of the parcel: the cabinet saw it go.
        self._set_compartment(data["compartment"], state="free")
        target = repo.get_parcel_by_parcel_id(session=self.session, parcel_id=data["parcel_id"])
        if target is None:
            return f"{row.type} of parcel {data['parcel_id']!r}, which the cloud does not know"
        try:
            with self.session.begin_nested():  # a refusal keeps the freed door
                self._transition(row, target, event)
        except CoreError as err:
            return f"{type(err).__name__}: {err}"
        return None

    def _notice_resend_requested(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        phone = data["phone"]
        parcels = repo.live_parcels(session=self.session, cab=self.cabinet.id, phone=phone)
        if not parcels:
            return f"resend asked for {mask_phone(phone)}, who has no parcel here"
        refused = []
        for target in parcels:
            history = repo.resend_history(session=self.session, parcel_row_id=target.id)
            decision = resend_decision(history, self.now, self.policy)
            if not decision.allowed:
                refused.append(f"{target.parcel_id} (again from {decision.retry_at})")
                continue
            self._transition(row, target, core.ReissueCode(code=self._issue_code()))
        if refused:
            log.info("resend limited for %s: %s", mask_phone(phone), ", ".join(refused))
        return None

    def _issue_code(self) -> IssuedCode:
        if self._live_hashes is None:
            self._live_hashes = repo.live_code_hashes(session=self.session, cab=self.cabinet.id)
        code = issue_code(
            length=self.policy.code_length,
            live_hashes=self._live_hashes,
            randbelow=self.randbelow,
            code_key=repo.cabinet_code_key(self.cabinet, seal_key=self.seal_key),
        )
        self._live_hashes.add(code.code_hash)
        return code

    def _transition(self, row: StoredRow, target: Any, event: core.Event) -> None:
        before = repo.parcel_to_core(target) if target is not None else None
        after, effects = core.apply(before, event, self.now)  # raises before anything is written
        stored = repo.store_parcel(session=self.session, row=target, parcel=after, now=self.now)
        repo.write_effects(
            session=self.session,
            parcel_row=stored,
            effects=effects,
            policy=self.policy,
            seal_key=self.seal_key,
            now=self.now,
            cab=self.cabinet.id,
            seq=row.seq,
        )

    # --- compartments and alarms ------------------------------------------------------------------

    def _compartment_service(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        compartment = self.session.get(Compartment, (self.cabinet.id, data["compartment"]))
        if compartment is None:
            return f"compartment {data['compartment']!r} is not in the cabinet's inventory"
        compartment.in_service = bool(data["in_service"])
        if compartment.in_service and compartment.state == "faulted":
            compartment.state = "free"  # back in service clears a fault (the parcel's sets below)
        self.session.add(compartment)
        self._compartment_clock(row, data["compartment"], usable=compartment.in_service)
        return None

    def _lock_fault(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        self._alarm(row, data)
        self._set_compartment(data["compartment"], state="faulted")
        self._compartment_clock(row, data["compartment"], usable=False)
        return None

    def _compartment_clock(self, row: StoredRow, compartment_id: str, *, usable: bool) -> None:
        """Pause (or resume) the deadline of the parcel behind a faulted (or repaired) door."""
        for target in repo.live_parcels(
            session=self.session, cab=self.cabinet.id, compartment=compartment_id
        ):
            if usable:
                self._set_compartment(compartment_id, state="occupied")
            event = compartment_event(repo.parcel_to_core(target), usable=usable)
            if event is not None:
                self._transition(row, target, event)

    def _alarm(self, row: StoredRow, data: dict[str, Any]) -> str | None:
        detail = data.get("detail") or (f"{data['seconds']} s" if "seconds" in data else "")
        self.session.add(
            Alarm(
                cabinet_id=self.cabinet.id,
                compartment=data.get("compartment"),
                kind=row.type,
                detail=str(detail)[:500],
                at=row.ts,
                seq=row.seq,
            )
        )
        return None

    _door_left_open = _door_forced = _keypad_lockout = _alarm

    def _set_compartment(self, compartment_id: str, *, state: str) -> None:
        # The birth inventory creates compartments; before it arrives there is nothing to update.
        compartment = self.session.get(Compartment, (self.cabinet.id, compartment_id))
        if compartment is not None:
            compartment.state = state
            self.session.add(compartment)
