"""Ingestion's storage side: store cabinet events once by (cab, seq), apply them in order, once.

The MQTT worker (`cloud.worker.ingest_loop`) does, per batch of deliveries, in one transaction:
lock the cabinets, `stage_events` (store), `apply_locked` per cabinet, `DepositBatch.flush`,
commit, then publish the deposits' `codes.put` and each `event-ack`. One cabinet alone (the
worker's fallback, and tests) is the same path, a batch of one cabinet:

    stored = store_events(session=s, cab=cab, envelopes=events, now=now)   # commits
    result = apply_pending(session=s, cab=cab, now=now, seal_key=key)      # commits
    publish event-ack {"upto": result.ack_upto}                            # after the commit

`store_events` is what makes an event safe (`INSERT ... ON CONFLICT DO NOTHING`, idempotent);
applying runs the core (`cloud.core.ingest.plan`, `cloud.core.parcels.apply`) holding the
cabinet's row lock, so any number of workers apply each event exactly once, in seq order,
stopping at a gap until the cabinet resends the missing seq.

A stored event is decoded into its protocol model (`decode_stored`) and applied by the handler
`HANDLERS` names for its class, at the end of this module. A new parcel's deposit leaves its
rows to the transaction's `DepositBatch` (the one function that builds them); door rules come
from `cloud.core.doors`.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlmodel import Session

from cloud.core import doors
from cloud.core import parcels as core
from cloud.core.access import (
    FLAG_ANNOUNCEMENT,
    Announcement,
    AuditEntry,
    PrincipalKind,
    ResourceKind,
    choose_announcement,
)
from cloud.core.alarms import AlarmKind
from cloud.core.alarms import detail as alarm_detail
from cloud.core.codes import IssuedCode, RandBelow, issue_code
from cloud.core.errors import CoreError
from cloud.core.ingest import Delivery, classify_delivery, contiguous_upto, plan, refusal
from cloud.core.notices import resend_decision
from cloud.core.phones import mask_phone
from cloud.core.policies import SitePolicy
from cloud.db import repo
from cloud.db.engine import write_session
from cloud.db.models import Cabinet, Compartment, Courier, InboxEvent, Parcel, Site
from cloud.errors import UnknownCabinet  # a foreign message, to be dropped
from cloud.services import alarms, audit, reservations
from cloud.services.deposit_batch import DepositBatch
from protocol.messages import (
    EVENT_TYPES,
    CompartmentServiceChanged,
    DoorForced,
    DoorLeftOpen,
    DoorLeftOpenData,
    DoorOccupancyMismatch,
    DoorOccupancyMismatchData,
    EventBase,
    KeypadLockout,
    LockFault,
    NoticeResendRequested,
    ParcelDeposited,
    ParcelDepositedData,
    ParcelPickedUp,
    ParcelRetrieved,
)

log = logging.getLogger(__name__)

# Events applied per transaction: bounds how long the cabinet's lock is held; the rest waits for
# the next call (`ApplyResult.more`).
APPLY_BATCH = 500


# A stored event being applied: an ORM row, or a plain one (`repo.pending_events`).
StoredRow = InboxEvent | repo.StoredEvent


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
    inserted: dict[str, dict[int, EventBase]] | None = None,
    unapplied: Mapping[str, Sequence[repo.StoredEvent]] | None = None,
    batch: DepositBatch | None = None,
) -> dict[str, int]:
    """Insert the not yet stored events of known cabinets, in the caller's transaction.

    One `INSERT ... ON CONFLICT DO NOTHING` for them all, in (cab, seq) order, so concurrent
    writers take the unique index's locks in one order; return how many were new per cabinet.
    An event the core refuses (`cloud.core.ingest.refusal`: a seq no cabinet can have reached,
    a timestamp from the future, against the time it was received) is left out and logged.
    `inserted`, if given, receives the events this call stored, by cab and seq: applied in the
    same transaction, they need not be decoded again from their rows (`apply_locked`).

    With `unapplied` (each locked cabinet's stored events past its `applied_upto`, read under
    its lock: `repo.pending_events`) and `batch`, a cabinet's events that are not stored yet
    are not inserted here but left to `batch` (`DepositBatch.defer`), which inserts them when
    the transaction has applied them, already marked applied: one write per event, where
    inserting then marking it had written each row twice. A seq past `applied_upto` and not
    among the stored ones is new, since a stored seq at or below it was applied and the lock
    keeps every other applier out; if a writer without the lock (`store_events`) stored one
    meanwhile, the deferred INSERT finds it and fails the transaction (`StoredMeanwhile`).
    A cabinet missing from `unapplied` (too many stored events) is inserted here as before.
    """
    rows, offered_by_cab = _rows_to_store(by_cab, received_at, applied_upto)
    deferred: list[dict[str, Any]] = []
    if unapplied is not None and batch is not None:
        rows, deferred = _split_deferred(rows, applied_upto, unapplied)
        batch.defer(deferred)
    rows.sort(key=lambda row: (row["cabinet_id"], row["seq"]))
    inserted_keys = repo.insert_ignore(
        session=session,
        table=InboxEvent.__table__,
        rows=rows,
        conflict_columns=["cabinet_id", "seq"],
        returning=["cabinet_id", "seq"],
    )
    new = set(inserted_keys) | {(row["cabinet_id"], row["seq"]) for row in deferred}
    if inserted is not None:
        for cab, by_seq in offered_by_cab.items():
            inserted[cab] = {seq: e for seq, e in by_seq.items() if (cab, seq) in new}
    offered = {(cab, seq) for cab, by_seq in offered_by_cab.items() for seq in by_seq}
    for cab, envelopes in by_cab.items():
        again = [e for e in envelopes if (cab, e.seq) in offered and (cab, e.seq) not in new]
        _report_redeliveries(session, cab, again)
    per_cab = Counter(c for c, _ in new)
    return {cab: per_cab[cab] for cab in by_cab}


def _split_deferred(
    rows: list[dict[str, Any]],
    applied_upto: Mapping[str, int],
    unapplied: Mapping[str, Sequence[repo.StoredEvent]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows to insert now and the rows of new events to insert once applied (see
    `stage_events`). A redelivery stays with the first (its INSERT skips it, as before)."""
    stored = {(row.cabinet_id, row.seq) for rows_ in unapplied.values() for row in rows_}
    now: list[dict[str, Any]] = []
    later: list[dict[str, Any]] = []
    fresh = Counter()
    for row in rows:
        cab, seq = row["cabinet_id"], row["seq"]
        if cab in unapplied and seq > applied_upto[cab] and (cab, seq) not in stored:
            later.append(row)
            fresh[cab] += 1
        else:
            now.append(row)
    # `apply_locked` reads a cabinet's events from its table once they reach APPLY_BATCH,
    # where deferred ones are not yet: such a cabinet's are inserted now.
    full = {cab for cab, count in fresh.items() if len(unapplied[cab]) + count >= APPLY_BATCH}
    if full:
        now += [row for row in later if row["cabinet_id"] in full]
        later = [row for row in later if row["cabinet_id"] not in full]
    return now, later


def _rows_to_store(
    by_cab: Mapping[str, Sequence[EventBase]],
    received_at: Mapping[str, datetime],
    applied_upto: Mapping[str, int],
) -> tuple[list[dict[str, Any]], dict[str, dict[int, EventBase]]]:
    """The inbox rows of the events the core does not refuse, and those events by cab and seq
    (the first of a seq offered twice)."""
    rows = []
    offered_by_cab: dict[str, dict[int, EventBase]] = {}
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
        offered_by_cab[cab] = by_seq
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
    return rows, offered_by_cab


def _report_redeliveries(session: Session, cab: str, envelopes: Sequence[EventBase]) -> None:
    if not envelopes:
        return
    stored = repo.stored_event_ids(session=session, cab=cab, seqs={e.seq for e in envelopes})
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

    The same path as the worker's batches (`apply_locked` with a `DepositBatch`), for one
    cabinet; its deposits' `codes.put` are left unclaimed, for the command dispatcher to send,
    since nothing here publishes after the commit.
    """
    write_session(session)
    try:
        cabinet = repo.lock_cabinet(session=session, cab=cab)
        if cabinet is None:
            raise UnknownCabinet(f"no cabinet {cab!r} in the registry")
        # Nothing read ahead: each deposit reads what it needs (the live code hashes at the
        # first code issued), as the worker's batch does for what its reads did not cover.
        batch = DepositBatch.prepare(session=session, deposits=(), cabs=(), claim=False)
        result = apply_locked(
            session=session,
            cabinet=cabinet,
            now=now,
            seal_key=seal_key,
            batch=batch,
            randbelow=randbelow,
            limit=limit,
        )
        if result.applied:
            batch.flush(session)
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
    batch: DepositBatch,
    randbelow: RandBelow = secrets.randbelow,
    limit: int = APPLY_BATCH,
    pending: Sequence[repo.StoredEvent] | None = None,
    decoded: Mapping[int, EventBase] | None = None,
) -> ApplyResult:
    """Apply what `apply_pending` would, for a cabinet whose row the caller has locked.

    Runs in the caller's transaction and neither commits nor rolls back: a worker applies many
    cabinets in one transaction this way (`cloud.worker.ingest_loop`). The rows it writes are
    left in `batch`: the caller must `batch.flush(session)` before committing.
    `pending`, if given, are the cabinet's stored events not applied yet, fewer than `limit`,
    in seq order (`repo.pending_events`, one query for many cabinets). `decoded`, if given, are
    events by seq that the caller stored in this transaction (`stage_events(inserted=...)`).
    """
    cab = cabinet.id
    if pending is not None and len(pending) < limit:
        stored: Sequence[StoredRow] = pending
    else:
        stored = repo.pending_inbox(session=session, cabinet=cabinet, limit=limit)
    step = plan(applied_upto=cabinet.applied_upto, stored=stored, limit=limit)
    # Rows are loaded one batch at a time, but the ack may cover every stored seq: storing,
    # not applying, is what makes an event safe for the cabinet to forget.
    stored_seqs = [row.seq for row in stored]
    if len(stored) >= limit:  # fewer than `limit`: those rows are all there is
        stored_seqs = repo.pending_seqs(session=session, cabinet=cabinet)
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
        policy=batch.policy(site),
        seal_key=seal_key,
        randbelow=randbelow,
        now=now,
        batch=batch,
        decoded=decoded or {},
    )
    anomalies = 0
    for row in step.apply:
        anomaly = applier.apply(row)
        if anomaly is not None:
            anomalies += 1
            log.warning("cabinet %s seq %d (%s): %s", cab, row.seq, row.type, anomaly)
        # One UPDATE for the transaction's events, not one each.
        batch.mark_applied(row, at=now, anomaly=anomaly[:2000] if anomaly else None)
    cabinet_applied_upto = step.applied_upto or cabinet.applied_upto
    batch.advance(cabinet, cabinet_applied_upto, seen_at=now)
    return ApplyResult(
        applied=len(step.apply),
        ack_upto=ack_upto,
        anomalies=anomalies,
        waiting=waiting,
        more=ack_upto > cabinet_applied_upto,
    )


def decode_stored(row: StoredRow) -> EventBase:
    """The protocol event a stored row holds, typed (`protocol.messages.EVENT_TYPES`).

    Raises KeyError for a type the protocol does not have, ValueError for data that does not
    fit it. The row was validated strictly when it arrived and stored as JSON by us; lax mode
    only turns JSON's strings back into the enums (`"M"` into `Size.M`) strict mode wants.
    """
    model = EVENT_TYPES[row.type]
    data = _DATA_MODELS[model].model_validate(row.data, strict=False)
    # The envelope's fields are the row's own columns, checked when it was stored.
    return model.model_construct(
        id=row.event_id, cab=row.cabinet_id, seq=row.seq, ts=row.ts, data=data
    )


_DATA_MODELS: dict[type[EventBase], type[BaseModel]] = {
    model: model.model_fields["data"].annotation  # type: ignore[misc]
    for model in EVENT_TYPES.values()
}


@dataclass
class _Applier:
    """Applies one stored event of a locked cabinet; returns an anomaly text or None.

    Every deposit of a new parcel leaves its rows to the transaction's `DepositBatch` (one
    function builds them, `DepositBatch.add`); the other events, and a deposit completing an
    announcement, change rows that exist, in a savepoint of their own.
    """

    session: Session
    cabinet: Cabinet
    policy: SitePolicy
    seal_key: bytes
    randbelow: RandBelow
    now: datetime
    batch: DepositBatch
    decoded: Mapping[int, EventBase]  # events this transaction stored, as received: by seq
    # The cabinet's live code hashes, read once per batch and grown with every code issued in it.
    # A hash that stopped being live in the batch stays in: that only ever avoids a free code.
    _live_hashes: set[str] | None = None

    def __post_init__(self) -> None:
        self._live_hashes = self.batch.live_hashes.get(self.cabinet.id)

    def apply(self, row: StoredRow) -> str | None:
        if row.type not in EVENT_TYPES:
            return f"unknown event type {row.type!r}"
        event = self.decoded.get(row.seq)
        if event is None:
            try:
                event = decode_stored(row)
            except ValueError as err:
                return f"{type(err).__name__}: {err}"
        # A new parcel's deposit, known from the batch's reads: nothing to read here (refused,
        # it goes the way below and is refused again there, with the reads).
        fast = isinstance(event, ParcelDeposited) and self.batch.takes(event.data)
        if fast and self._new_parcel(event) is None:  # type: ignore[arg-type]
            return None
        # Whatever comes next reads the database: the batch's rows must be in it by then.
        self.batch.before_other_event(self.session)
        handler = HANDLERS[type(event)]
        try:
            # A savepoint: a refused event leaves none of its rows behind.
            with self.session.begin_nested():
                return handler(self, event)
        except (CoreError, ValueError, KeyError) as err:
            return f"{type(err).__name__}: {err}"

    # --- parcels ----------------------------------------------------------------------------------

    def parcel_deposited(self, event: ParcelDeposited) -> str | None:
        data = event.data
        existing = repo.get_parcel_by_parcel_id(session=self.session, parcel_id=data.parcel_id)
        target = existing or self._reserved(data) or self._announcement(data)
        if target is None:
            return self._new_parcel(event, raises=True)
        self._transition(event, target, self._deposit(event))
        self._set_door(data.compartment, doors.after_deposit)
        reservations.deposited(
            session=self.session, parcel_row_id=target.id, parcel_id=data.parcel_id, now=self.now
        )
        return None

    def _reserved(self, data: ParcelDepositedData) -> Parcel | None:
        """The announced shipment whose reserved door this deposit used: the cabinet deposits it
        under the shipment's id (docs/mqtt.md#door-reservations), and its carrier was checked
        there, so it completes that shipment whatever else announced the tracking number."""
        row = self.session.get(Parcel, data.parcel_id)
        if (
            row is None
            or row.parcel_id is not None
            or row.status != core.Status.ANNOUNCED.value
            or row.tracking_no != data.tracking_no
            or reservations.held_ever(session=self.session, parcel_row_id=row.id) is None
        ):
            return None
        return row

    def _new_parcel(self, event: ParcelDeposited, *, raises: bool = False) -> str | None:
        """Apply the deposit of a parcel with no row and no announcement; its rows, and its
        door's, go to the batch. Return the refusal (or raise it, with `raises`)."""
        try:
            after, effects = core.apply(None, self._deposit(event), self.now)
            self.batch.add(
                parcel=after,
                effects=effects,
                policy=self.policy,
                seal_key=self.seal_key,
                now=self.now,
                seq=event.seq,
            )
        except (CoreError, ValueError, KeyError) as err:
            if raises:
                raise
            return f"{type(err).__name__}: {err}"
        return None

    def _announcement(self, data: ParcelDepositedData) -> Parcel | None:
        """The announcement this deposit completes, by the stated rule (who-may-do-what.md):
        the announced phone wins only over a courier of the announcing key's carrier; an
        announcement naming another phone is otherwise left announced, and flagged."""
        rows = repo.announcements(session=self.session, tracking_no=data.tracking_no)
        if not rows:
            return None
        courier = self.session.get(Courier, data.courier_id)
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
            weighed, courier_carrier_id=courier_carrier, typed_phone=data.phone
        )
        for r in rows:
            if chosen is None or r.id != chosen.ref:
                self._flag_announcement(r, data, courier_carrier)
        return next((r for r in rows if chosen is not None and r.id == chosen.ref), None)

    def _flag_announcement(
        self, announcement: Parcel, data: ParcelDepositedData, courier_carrier: str | None
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
                "parcel_id": data.parcel_id,
                "courier_id": data.courier_id,
                "courier_carrier": courier_carrier,
                "owner_key_id": announcement.owner_key_id,
                "owner_carrier_id": announcement.owner_carrier_id,
                "owner_merchant_id": announcement.owner_merchant_id,
            },
        )
        audit.record(session=self.session, entry=entry, now=self.now)

    def _deposit(self, event: ParcelDeposited) -> core.Deposit:
        data = event.data
        return core.Deposit(
            parcel_id=data.parcel_id,
            cabinet_id=self.cabinet.id,
            compartment=data.compartment,
            size=data.size.value,
            tracking_no=data.tracking_no,
            phone=data.phone,
            courier_id=data.courier_id,
            at=event.ts,
            code=self._issue_code(),
            window_s=self.policy.pickup_window_s,
        )

    def parcel_picked_up(self, event: ParcelPickedUp) -> str | None:
        data = event.data
        step = core.PickUp(
            parcel_id=data.parcel_id,
            compartment=data.compartment,
            method=data.method.value,
            at=event.ts,
        )
        return self._left_locker(event, step)

    def parcel_retrieved(self, event: ParcelRetrieved) -> str | None:
        data = event.data
        step = core.Retrieve(
            parcel_id=data.parcel_id,
            compartment=data.compartment,
            courier_id=data.courier_id,
            reason=data.reason.value,
            at=event.ts,
        )
        return self._left_locker(event, step)

    def _left_locker(
        self, event: ParcelPickedUp | ParcelRetrieved, step: core.PickUp | core.Retrieve
    ) -> str | None:
        parcel_id = event.data.parcel_id
        self._set_door(event.data.compartment, doors.after_left_locker)
        target = repo.get_parcel_by_parcel_id(session=self.session, parcel_id=parcel_id)
        if target is None:
            return f"{event.type} of parcel {parcel_id!r}, which the cloud does not know"
        try:
            with self.session.begin_nested():  # a refusal keeps the freed door
                self._transition(event, target, step)
        except CoreError as err:
            return f"{type(err).__name__}: {err}"
        return None

    def notice_resend_requested(self, event: NoticeResendRequested) -> str | None:
        phone = event.data.phone
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
            self._transition(event, target, core.ReissueCode(code=self._issue_code()))
        if refused:
            log.info("resend limited for %s: %s", mask_phone(phone), ", ".join(refused))
        return None

    def _issue_code(self) -> IssuedCode:
        if self._live_hashes is None:
            self._live_hashes = repo.live_code_hashes(session=self.session, cab=self.cabinet.id)
            self.batch.live_hashes[self.cabinet.id] = self._live_hashes
        code = issue_code(
            length=self.policy.code_length,
            live_hashes=self._live_hashes,
            randbelow=self.randbelow,
            code_key=repo.cabinet_code_key(self.cabinet, seal_key=self.seal_key),
        )
        self._live_hashes.add(code.code_hash)
        return code

    def _transition(self, event: EventBase, target: Parcel, step: core.Event) -> None:
        """Apply `step` to a parcel that has a row, and write the row and its effects."""
        after, effects = core.apply(repo.parcel_to_core(target), step, self.now)  # raises first
        stored = repo.store_parcel(
            session=self.session, row=target, parcel=after, now=self.now, policy=self.policy
        )
        repo.write_effects(
            session=self.session,
            parcel_row=stored,
            effects=effects,
            policy=self.policy,
            seal_key=self.seal_key,
            now=self.now,
            cab=self.cabinet.id,
            seq=event.seq,
        )

    # --- compartments and alarms ------------------------------------------------------------------

    def compartment_service(self, event: CompartmentServiceChanged) -> str | None:
        door_id = event.data.compartment
        compartment = self.session.get(Compartment, (self.cabinet.id, door_id))
        if compartment is None:
            return f"compartment {door_id!r} is not in the cabinet's inventory"
        in_service = event.data.in_service
        self._set_door(door_id, lambda door: doors.after_service(door, in_service=in_service))
        self._door_clock(event, door_id, usable=in_service)
        return None

    def lock_fault(self, event: LockFault) -> str | None:
        self.alarm(event)
        self._set_door(event.data.compartment, doors.after_fault)
        self._door_clock(event, event.data.compartment, usable=False)
        return None

    def _door_clock(self, event: EventBase, door_id: str, *, usable: bool) -> None:
        """Pause (or resume) the deadline of the parcel behind a faulted (or repaired) door."""
        behind = repo.live_parcels(session=self.session, cab=self.cabinet.id, compartment=door_id)
        if usable and behind:
            self._set_door(door_id, doors.behind_usable_door)
        pairs = [(row, repo.parcel_to_core(row)) for row in behind]
        for target, step in doors.door_clock_events(pairs, usable={door_id: usable}):
            self._transition(event, target, step)

    def alarm(
        self,
        event: DoorLeftOpen | DoorForced | LockFault | KeypadLockout | DoorOccupancyMismatch,
    ) -> str | None:
        data = event.data
        if isinstance(event, KeypadLockout):
            alarms.keypad_lockout(
                session=self.session, cabinet=self.cabinet, at=event.ts, now=self.now, seq=event.seq
            )
            return None
        detail = getattr(data, "detail", None) or (
            alarm_detail(AlarmKind.DOOR_LEFT_OPEN, seconds=data.seconds)
            if isinstance(data, DoorLeftOpenData)
            else ""
        )
        if isinstance(data, DoorOccupancyMismatchData):
            detail = alarm_detail(
                AlarmKind.OCCUPANCY_MISMATCH, expected=data.expected, sensed=data.sensed
            )
        alarms.raise_alarm(
            session=self.session,
            cabinet=self.cabinet,
            kind=event.type,
            compartment=getattr(data, "compartment", None),
            detail=str(detail),
            at=event.ts,
            now=self.now,
            seq=event.seq,
        )
        return None

    def _set_door(self, door_id: str, rule: Callable[[doors.Door], doors.Door]) -> None:
        # The birth inventory creates compartments; before it arrives there is nothing to update.
        compartment = self.session.get(Compartment, (self.cabinet.id, door_id))
        if compartment is not None:
            after = rule(doors.Door(state=compartment.state, in_service=compartment.in_service))
            compartment.state, compartment.in_service = after.state, after.in_service
            self.session.add(compartment)


Handler = Callable[[_Applier, Any], str | None]

# Every event type a cabinet sends, and what applies it (a type missing here is an anomaly).
HANDLERS: dict[type[EventBase], Handler] = {
    ParcelDeposited: _Applier.parcel_deposited,  # "parcel.deposited"
    ParcelPickedUp: _Applier.parcel_picked_up,  # "parcel.picked_up"
    ParcelRetrieved: _Applier.parcel_retrieved,  # "parcel.retrieved"
    CompartmentServiceChanged: _Applier.compartment_service,  # "compartment.service"
    LockFault: _Applier.lock_fault,  # "lock.fault"
    DoorLeftOpen: _Applier.alarm,  # "door.left_open"
    DoorForced: _Applier.alarm,  # "door.forced"
    DoorOccupancyMismatch: _Applier.alarm,  # "door.occupancy_mismatch"
    KeypadLockout: _Applier.alarm,  # "keypad.lockout"
    NoticeResendRequested: _Applier.notice_resend_requested,  # "notice.resend_requested"
}
