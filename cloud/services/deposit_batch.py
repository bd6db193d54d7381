"""A transaction's plain deposits, written set-based: one INSERT per table, not ~14 statements each.

Most events a worker applies are deposits of a parcel the cloud has never heard of: no parcel row
has its `parcel_id` and no announcement waits for its tracking number. For those the core's
outcome (`cloud.core.parcels.apply(None, Deposit)`: a new parcel, its timeline entry, `codes.put`
and notice) needs nothing from the database but the cabinet's live code hashes, so the applier
computes it at once and leaves the rows here; `flush` writes them all, one statement per table,
in the caller's transaction. `locker bench cloud` measured the per-event ORM path at ~14 ms of
CPU per deposit, almost all of it SQLAlchemy's per-statement and per-object work.

Everything else goes the per-event way, and the applier flushes this batch before it does: a
later event of the transaction then reads the deposits' rows like any others (a pickup of a
parcel deposited in the same batch, a second deposit of one parcel_id). `prepare` reads, for
the transaction's events, which parcel_ids exist and which tracking numbers are announced; a
deposit outside what it read, or of a parcel_id already in the batch, takes the per-event path.
A conflict the read could not foresee (another transaction inserting the same parcel_id) fails
the INSERT, and with it the transaction, which the worker then does again cabinet by cabinet on
the per-event path (`cloud.worker.ingest_loop`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    WebhookOutbox,
)
from protocol.messages import EventBase

DEPOSITED = "parcel.deposited"


@dataclass
class _Rows:
    """The rows one deposit writes; built whole before any is kept, so a failure keeps none."""

    parcel: dict[str, Any]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    webhooks: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DepositBatch:
    """Deposits of new parcels, kept as rows until `flush` writes them."""

    new_parcel_ids: set[str]  # named by the transaction's events, in no parcel row nor kept here
    unannounced: set[str]  # tracking numbers of those events no announcement waited for
    live_hashes: dict[str, set[str]]  # per cabinet; the appliers grow them as they issue codes
    _rows: list[_Rows] = field(default_factory=list)
    _applied: list[dict[str, Any]] = field(default_factory=list)  # events marked applied
    _uptos: dict[str, int] = field(default_factory=dict)  # cabinets' new applied_upto
    _doors: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def prepare(
        cls, *, session: Session, by_cab: Mapping[str, Sequence[EventBase]]
    ) -> DepositBatch:
        """Read what deciding the deposits among `by_cab`'s events needs (three queries)."""
        deposits = [
            event.data
            for events in by_cab.values()
            for event in events
            if getattr(event, "type", None) == DEPOSITED
        ]
        parcel_ids = {data.parcel_id for data in deposits}  # type: ignore[attr-defined]
        tracking_nos = {data.tracking_no for data in deposits}  # type: ignore[attr-defined]
        return cls(
            new_parcel_ids=parcel_ids
            - repo.parcel_ids_taken(session=session, parcel_ids=parcel_ids),
            unannounced=tracking_nos
            - repo.announced_tracking_nos(session=session, tracking_nos=tracking_nos),
            live_hashes=repo.live_code_hashes_of(session=session, cabs=by_cab),
        )

    def __len__(self) -> int:
        return len(self._rows)

    def takes(self, data: Mapping[str, Any]) -> bool:
        """Whether a deposit with this data makes a new parcel the batch may write."""
        parcel_id = data.get("parcel_id")
        return parcel_id in self.new_parcel_ids and data.get("tracking_no") in self.unannounced

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
        rows = _Rows(parcel={"id": row_id, "created_at": now, **repo.parcel_values(parcel, now)})
        cab = parcel.cabinet_id
        for effect in effects:
            match effect:
                case core.TimelineEntry():
                    rows.timeline.append(
                        repo.timeline_values(row_id, effect, now=now, cab=cab, seq=seq)
                    )
                case core.CodesPut():
                    rows.commands.append(
                        repo.command_values(
                            cab=effect.cabinet_id,
                            type="codes.put",
                            data=repo.codes_put_data(effect),
                            now=now,
                            parcel_id=effect.parcel_id,
                        )
                    )
                case core.Notify():
                    rows.notices.append(
                        repo.notice_values(
                            row_id, effect, policy=policy, seal_key=seal_key, now=now
                        )
                    )
                case core.Webhook():
                    rows.webhooks.append(repo.webhook_values(row_id, effect, now=now))
                case _:
                    raise ValueError(f"a deposit's {type(effect).__name__} is not batched")
        self._rows.append(rows)
        self.new_parcel_ids.discard(parcel.parcel_id)  # not new any more: a second is not taken
        self._doors[(cab, parcel.compartment)] = "occupied"

    def mark_applied(self, row: InboxEvent, *, at: datetime, anomaly: str | None) -> None:
        """Mark a stored event applied (with its anomaly, if the core refused it) at `flush`."""
        self._applied.append(
            {"cab": row.cabinet_id, "event_seq": row.seq, "at": at, "anomaly": anomaly}
        )
        # The loaded row says so at once, and is not dirty: the UPDATE is `flush`'s.
        for name, value in (("applied", True), ("applied_at", at), ("anomaly", anomaly)):
            set_committed_value(row, name, value)

    def advance(self, cabinet: Cabinet, applied_upto: int) -> None:
        """Set a cabinet's `applied_upto` at `flush` (the loaded row says so at once)."""
        self._uptos[cabinet.id] = applied_upto
        set_committed_value(cabinet, "applied_upto", applied_upto)

    def flush(self, session: Session) -> None:
        """Write the kept rows in the caller's transaction, one statement per table; empty."""
        if not (self._rows or self._doors or self._applied or self._uptos):
            return
        session.flush()  # the ORM's pending changes came first, so they are written first
        rows, self._rows = self._rows, []
        commands = [command for r in rows for command in r.commands]
        repo.insert_rows(session=session, model=Parcel, rows=[r.parcel for r in rows])
        repo.insert_rows(
            session=session, model=ParcelEvent, rows=[t for r in rows for t in r.timeline]
        )
        # As `repo.supersede_codes_puts`: an older unacked put of the parcel is never sent again.
        newest = {(c["cabinet_id"], c["parcel_id"]): c["id"] for c in commands}
        older = repo.unacked_codes_puts(session=session, parcels=newest)
        repo.mark_superseded(
            session=session,
            by={old_id: newest[(cab, parcel_id)] for old_id, cab, parcel_id in older},
        )
        repo.insert_rows(session=session, model=CommandOutbox, rows=commands)
        notices = [n for r in rows for n in r.notices]
        if notices:
            repo.insert_ignore(
                session=session,
                table=NoticeOutbox.__table__,
                rows=repo.with_defaults(NoticeOutbox, notices),
                conflict_columns=["dedupe_key"],
            )
        repo.insert_rows(
            session=session, model=WebhookOutbox, rows=[w for r in rows for w in r.webhooks]
        )
        doors, self._doors = self._doors, {}
        repo.set_compartment_states(session=session, states=doors)
        applied, self._applied = self._applied, []
        repo.mark_events_applied(session=session, marks=applied)
        uptos, self._uptos = self._uptos, {}
        repo.set_applied_upto(session=session, uptos=uptos)
