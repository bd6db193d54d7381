"""The cabinets' stored events (the inbox): what is not applied yet, and marking it applied."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.db import bulk
from cloud.db.bulk import among
from cloud.db.models import (
    Cabinet,
    InboxEvent,
)
from cloud.db.rows import core_rows


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A stored, not yet applied event as the apply step reads it (`pending_events`): the
    columns of an `InboxEvent` row, read as a plain row rather than an ORM object."""

    cabinet_id: str
    seq: int
    event_id: str
    type: str
    ts: datetime
    data: dict[str, Any]


def pending_events(
    *, session: Session, cabinets: Iterable[Cabinet], limit: int
) -> dict[str, list[StoredEvent]]:
    """Return the stored, not yet applied events of each cabinet, in seq order (one query).

    A cabinet with `limit` or more of them is left out (its caller reads it in batches), and so
    are, if the query stopped at `limit` rows, the last cabinet it read and those after it.
    """
    by_id = {cabinet.id: cabinet for cabinet in cabinets}
    if not by_id:
        return {}
    events = InboxEvent.__table__.c
    statement = (
        select(events.cabinet_id, events.seq, events.event_id, events.type, events.ts, events.data)
        .join(Cabinet, col(Cabinet.id) == events.cabinet_id)
        .where(among(events.cabinet_id, by_id, dialect=session.connection().dialect.name))
        .where(events.seq > col(Cabinet.applied_upto))
        .order_by(events.cabinet_id, events.seq)
        .limit(limit)
    )
    rows = [StoredEvent(*row) for row in core_rows(session, statement)]
    found: dict[str, list[StoredEvent]] = {cab: [] for cab in by_id}
    for row in rows:
        found[row.cabinet_id].append(row)
    if len(rows) >= limit:  # the query stopped in the last cabinet read: it and those after
        found = {cab: events for cab, events in found.items() if cab < rows[-1].cabinet_id}
    return {cab: events for cab, events in found.items() if len(events) < limit}


def mark_events_applied(*, session: Session, marks: Sequence[dict[str, Any]]) -> None:
    """Mark stored events applied: `marks` hold cab, event_seq, at, anomaly (one executemany)."""
    if not marks:
        return
    bulk.update_rows(
        session.connection(),
        InboxEvent.__table__,
        [
            {
                "cabinet_id": mark["cab"],
                "seq": mark["event_seq"],
                "applied": True,
                "applied_at": mark["at"],
                "anomaly": mark["anomaly"],
            }
            for mark in marks
        ],
        key=("cabinet_id", "seq"),
    )


def set_applied_upto(*, session: Session, uptos: dict[str, tuple[int, datetime]]) -> None:
    """Set cabinets' `applied_upto` and `last_seen_at` (one executemany)."""
    if not uptos:
        return
    bulk.update_rows(
        session.connection(),
        Cabinet.__table__,
        [
            {"id": cab, "applied_upto": upto, "last_seen_at": seen}
            for cab, (upto, seen) in uptos.items()
        ],
        key=("id",),
    )


def pending_inbox(*, session: Session, cabinet: Cabinet, limit: int) -> Sequence[InboxEvent]:
    """Return up to `limit` of a cabinet's stored events past its `applied_upto`, in seq order."""
    return session.exec(
        select(InboxEvent)
        .where(InboxEvent.cabinet_id == cabinet.id, InboxEvent.seq > cabinet.applied_upto)
        .order_by(col(InboxEvent.seq))
        .limit(limit)
    ).all()


def pending_seqs(*, session: Session, cabinet: Cabinet) -> Sequence[int]:
    """Return the seqs of every stored event of a cabinet past its `applied_upto`."""
    return session.exec(
        select(InboxEvent.seq).where(
            InboxEvent.cabinet_id == cabinet.id, InboxEvent.seq > cabinet.applied_upto
        )
    ).all()


def stored_event_ids(*, session: Session, cab: str, seqs: Iterable[int]) -> dict[int, str]:
    """Return the event id stored under each of a cabinet's `seqs` that holds one."""
    return dict(
        session.exec(
            select(InboxEvent.seq, InboxEvent.event_id).where(
                InboxEvent.cabinet_id == cab, col(InboxEvent.seq).in_(sorted(set(seqs)))
            )
        ).all()
    )
