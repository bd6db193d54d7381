"""A transaction's plain deposits, written set-based: one INSERT per table, not ~14 statements each.

Most events a worker applies are deposits of a parcel the cloud has never heard of: no parcel row
has its `parcel_id` and no announcement waits for its tracking number. For those the core's
outcome (`cloud.core.parcels.apply(None, Deposit)`: a new parcel, its timeline entry, `codes.put`
and notice) needs nothing from the database but the cabinet's live code hashes, so the applier
computes it at once and leaves the rows here; `flush` writes them all, one statement per table,
in the caller's transaction. `locker bench cloud` measured writing them through the ORM at ~14 ms of
CPU per deposit, almost all of it SQLAlchemy's per-statement and per-object work.

Every new parcel's deposit is written here, in a batch of many events or of one cabinet's
(`apply_pending`): `add` is the one function that builds a deposit's rows. `prepare` reads, for
the transaction's events, which parcel_ids exist and which tracking numbers are announced, so
most deposits need no read of their own (`takes`); a deposit outside what it read is decided
by the applier after its reads (a deposit completing an announcement, or of a known parcel,
changes a row that exists: `repo.write_effects`). The applier flushes this batch before every
event that reads the database, so a later event of the transaction reads the deposits' rows
like any others (a pickup of a parcel deposited in the same batch, a second deposit of one
parcel_id). A conflict the read could not foresee (another transaction inserting the same
parcel_id) fails the INSERT, and with it the transaction, which the worker then does again
cabinet by cabinet (`cloud.worker.ingest_loop`).

With `claim` (the worker), a deposit's `codes.put` is written already claimed (sent once, now)
with its envelope kept in `sends`: the worker publishes those right after the commit, where the
command dispatcher would have read the rows back, claimed them in a second transaction and
re-encoded them; without (`apply_pending`, which publishes nothing), the dispatcher sends them.
A crash between the commit and the publish costs the command one
resend interval, as a crash between the dispatcher's claim and its publish does. A send the
same transaction superseded (a pickup right behind its deposit) is dropped from `sends`
(`drop_superseded`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from cloud.core import parcels as core
from cloud.core.policies import SitePolicy
from cloud.db import repo
from cloud.db.models import (
    Cabinet,
    CommandOutbox,
    InboxEvent,
    NoticeOutbox,
    Parcel,
    ParcelEvent,
    Site,
)
from protocol.codec import encode
from protocol.messages import ParcelDepositedData, PutCodes


@dataclass
class _Rows:
    """The rows one deposit writes; built whole before any is kept, so a failure keeps none."""

    parcel: dict[str, Any]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)


class StoredMeanwhile(RuntimeError):
    """A deferred event was stored by a writer that did not hold the cabinet's lock
    (`store_events`) between the read of the stored events and the INSERT: the transaction
    applied its own copy, so it must fail, and is done again cabinet by cabinet."""


@dataclass(frozen=True, slots=True)
class Send:
    """A claimed command to publish once the transaction that wrote it has committed."""

    cab: str
    command_id: str
    payload: bytes  # the encoded envelope


@dataclass
class DepositBatch:
    """Deposits of new parcels, kept as rows until `flush` writes them."""

    new_parcel_ids: set[str]  # named by the transaction's events, in no parcel row nor kept here
    unannounced: set[str]  # tracking numbers of those events no announcement waited for
    live_hashes: dict[str, set[str]]  # per cabinet; the appliers grow them as they issue codes
    _rows: list[_Rows] = field(default_factory=list)
    _applied: list[dict[str, Any]] = field(default_factory=list)  # events marked applied
    # Cabinets' new applied_upto, and when they were last heard from (the events' receipt).
    _uptos: dict[str, tuple[int, datetime]] = field(default_factory=dict)
    _doors: dict[tuple[str, str], str] = field(default_factory=dict)
    # Commands written claimed, to publish after the commit (`Send`), and whether the
    # transaction applied other events after some, which may have superseded them.
    sends: list[Send] = field(default_factory=list)
    others_after_sends: bool = False
    taken: int = 0  # deposits added (their commands are in `sends`)
    claim: bool = True  # False: `codes.put` left unclaimed, for the command dispatcher
    _policies: dict[str, SitePolicy] = field(default_factory=dict)  # by site id
    # New events' inbox rows, inserted by `flush` with what applying them marked (`defer`).
    _deferred: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def prepare(
        cls,
        *,
        session: Session,
        deposits: Iterable[ParcelDepositedData],
        cabs: Iterable[str],
        claim: bool = True,
    ) -> DepositBatch:
        """Read what deciding `deposits` needs (one query; none for nothing to read).

        `cabs` are the cabinets whose live code hashes to read at once (the others' are read
        when a code is first issued). With `claim`, the caller publishes `sends` after its
        commit; without, the deposits' `codes.put` are left to the command dispatcher.
        """
        deposits = list(deposits)
        read = repo.deposit_reads(
            session=session,
            parcel_ids=[data.parcel_id for data in deposits],
            tracking_nos=[data.tracking_no for data in deposits],
            cabs=cabs,
        )
        return cls(
            new_parcel_ids={data.parcel_id for data in deposits} - read.taken,
            unannounced={data.tracking_no for data in deposits} - read.announced,
            live_hashes=read.live_hashes,
            claim=claim,
        )

    def policy(self, site: Site) -> SitePolicy:
        """The site's policy, made once per transaction: its cabinets share it."""
        policy = self._policies.get(site.id)
        if policy is None:
            policy = self._policies[site.id] = repo.site_policy(site)
        return policy

    def __len__(self) -> int:
        return len(self._rows)

    def takes(self, data: ParcelDepositedData) -> bool:
        """Whether `prepare`'s reads say this deposit makes a new parcel (no read needed)."""
        return data.parcel_id in self.new_parcel_ids and data.tracking_no in self.unannounced

    def add(
        self,
        *,
        parcel: core.Parcel,
        effects: Iterable[core.Effect],
        policy: SitePolicy,
        seal_key: bytes,
        now: datetime,
        seq: int,
    ) -> None:
        """Keep the rows of a deposit the core has applied (`core.apply(None, Deposit)`).

        Raises ValueError (and keeps nothing) for an effect a new parcel's deposit never has.
        """
        assert parcel.parcel_id is not None and parcel.compartment is not None
        row_id = repo.new_parcel_id(parcel)
        values = repo.parcel_values(parcel, now, policy)
        rows = _Rows(parcel={"id": row_id, "created_at": now, **values})
        cab = parcel.cabinet_id
        for effect in effects:
            match effect:
                case core.TimelineEntry():
                    rows.timeline.append(
                        repo.timeline_values(row_id, effect, now=now, cab=cab, seq=seq)
                    )
                case core.CodesPut():
                    data = repo.codes_put_data(effect)
                    command = repo.command_values(
                        cab=effect.cabinet_id,
                        type="codes.put",
                        data=data,
                        now=now,
                        parcel_id=effect.parcel_id,
                    )
                    rows.commands.append(command)
                    if not self.claim:
                        continue
                    command.update(sent_at=now, send_count=1)  # claimed: `sends` publishes it
                    envelope = PutCodes(
                        id=command["id"],
                        cab=effect.cabinet_id,
                        ts=now,
                        expires_at=command["expires_at"],
                        data=data,
                    )
                    rows.sends.append(Send(effect.cabinet_id, command["id"], encode(envelope)))
                case core.Notify():
                    rows.notices.append(
                        repo.notice_values(
                            row_id, effect, policy=policy, seal_key=seal_key, now=now
                        )
                    )
                case core.Webhook():
                    # No webhook row: a new parcel's deposit completes no announcement, so the
                    # parcel has no owner key, whose endpoints alone hear of it (`write_effects`).
                    pass
                case _:
                    raise ValueError(f"a deposit's {type(effect).__name__} is not batched")
        self._rows.append(rows)
        self.taken += 1
        self.new_parcel_ids.discard(parcel.parcel_id)  # not new any more: a second is not taken
        self._doors[(cab, parcel.compartment)] = "occupied"

    def defer(self, rows: Iterable[dict[str, Any]]) -> None:
        """Keep new events' inbox rows (`cloud.services.ingest.stage_events`) for `flush` to
        insert, marked applied if they were by then: one write per event, not an INSERT and
        an UPDATE."""
        for row in rows:
            # Every row with the columns `mark_applied` sets: one INSERT takes them all.
            self._deferred[(row["cabinet_id"], row["seq"])] = {
                **row,
                "applied": False,
                "applied_at": None,
                "anomaly": None,
            }

    def deferred_events(self) -> dict[str, list[repo.StoredEvent]]:
        """The deferred events by cabinet, as the apply step reads stored ones, in seq order."""
        found: dict[str, list[repo.StoredEvent]] = {}
        for (cab, seq), row in sorted(self._deferred.items()):
            event = repo.StoredEvent(cab, seq, row["event_id"], row["type"], row["ts"], row["data"])
            found.setdefault(cab, []).append(event)
        return found

    def mark_applied(
        self, row: InboxEvent | repo.StoredEvent, *, at: datetime, anomaly: str | None
    ) -> None:
        """Mark a stored event applied (with its anomaly, if the core refused it) at `flush`."""
        deferred = self._deferred.get((row.cabinet_id, row.seq))
        if deferred is not None:  # not inserted yet: it will be, applied
            deferred.update(applied=True, applied_at=at, anomaly=anomaly)
            return
        self._applied.append(
            {"cab": row.cabinet_id, "event_seq": row.seq, "at": at, "anomaly": anomaly}
        )
        if isinstance(row, InboxEvent):  # a loaded row says so at once, not dirty: `flush` writes
            for name, value in (("applied", True), ("applied_at", at), ("anomaly", anomaly)):
                set_committed_value(row, name, value)

    def advance(self, cabinet: Cabinet, applied_upto: int, *, seen_at: datetime) -> None:
        """Set a cabinet's `applied_upto` and `last_seen_at` at `flush` (the loaded row says so
        at once). A cabinet that sends events is there: the console's "last seen" moves with
        them, in the UPDATE that advances its seq anyway (no statement of its own)."""
        if cabinet.last_seen_at is not None and cabinet.last_seen_at > seen_at:
            seen_at = cabinet.last_seen_at
        self._uptos[cabinet.id] = (applied_upto, seen_at)
        set_committed_value(cabinet, "applied_upto", applied_upto)
        set_committed_value(cabinet, "last_seen_at", seen_at)

    def before_other_event(self, session: Session) -> None:
        """Flush, before an event the applier reads the database for (in a savepoint)."""
        self.flush(session)
        self.others_after_sends |= bool(self.sends)

    def drop_superseded(self, session: Session) -> None:
        """Drop from `sends` what a later command of this transaction superseded (call last)."""
        if self.sends and self.others_after_sends:
            gone = repo.superseded_among(session=session, ids=[s.command_id for s in self.sends])
            self.sends = [send for send in self.sends if send.command_id not in gone]
            # Never sent after all: the rows must not say they were.
            repo.unclaim_commands(session=session, ids=gone)

    def _store_deferred(self, session: Session) -> None:
        """Insert the deferred events, in (cab, seq) order as every insert of events is;
        raise StoredMeanwhile if one was stored meanwhile (this transaction then fails)."""
        deferred, self._deferred = self._deferred, {}
        if not deferred:
            return
        rows = [deferred[key] for key in sorted(deferred)]
        inserted = repo.insert_ignore(
            session=session,
            table=InboxEvent.__table__,
            rows=rows,
            conflict_columns=["cabinet_id", "seq"],
            returning=["cabinet_id", "seq"],
        )
        if len(inserted) != len(rows):
            missing = sorted(set(deferred) - {(cab, seq) for cab, seq in inserted})
            raise StoredMeanwhile(f"events {missing[:5]} were stored by another writer meanwhile")

    def flush(self, session: Session) -> None:
        """Write the kept rows in the caller's transaction, one statement per table; empty."""
        if not (self._rows or self._doors or self._applied or self._uptos or self._deferred):
            return
        session.flush()  # the ORM's pending changes came first, so they are written first
        self._store_deferred(session)
        rows, self._rows = self._rows, []
        self.sends += [send for r in rows for send in r.sends]
        commands = [command for r in rows for command in r.commands]
        repo.insert_rows(session=session, model=Parcel, rows=[r.parcel for r in rows])
        repo.insert_rows(
            session=session, model=ParcelEvent, rows=[t for r in rows for t in r.timeline]
        )
        # No older codes.put to supersede (`repo.supersede_codes_puts`): a put is only ever
        # queued for a parcel row, parcel rows are never deleted, and these parcel_ids had none.
        repo.insert_rows(session=session, model=CommandOutbox, rows=commands)
        notices = [n for r in rows for n in r.notices]
        if notices:
            repo.insert_ignore(
                session=session,
                table=NoticeOutbox.__table__,
                rows=repo.with_defaults(NoticeOutbox, notices),
                conflict_columns=["dedupe_key"],
            )
        doors, self._doors = self._doors, {}
        repo.set_compartment_states(session=session, states=doors)
        applied, self._applied = self._applied, []
        repo.mark_events_applied(session=session, marks=applied)
        uptos, self._uptos = self._uptos, {}
        repo.set_applied_upto(session=session, uptos=uptos)
