"""The exactly-once, in-order rule for a cabinet's events: what to store, apply and `event-ack`.

The contract (docs/mqtt.md#seq): `seq` rises by exactly 1 per event per cabinet; the cabinet resends
anything not covered by an `event-ack`, in order, as often as it takes; the broker may deliver
twice, late, or to another worker. The cloud therefore

1. stores each delivery by `(cab, seq)` once (`classify_delivery`: new, duplicate or conflict);
2. under a per-cabinet lock (a row lock on the cabinet's cursor), takes the stored events with
   seq above the last applied one and applies them strictly in seq order, stopping at the first
   gap (`plan`): an event is applied once, and never before the ones it follows;
3. publishes `event-ack upto` after its commit, where `upto` is the highest seq such that every
   seq up to it is durably stored: never more, or the cabinet would forget an event the cloud
   does not have.

Before storing, `refusal` screens each delivery for what no cabinet can have sent: a seq so far
past the last applied one (or past 2^53) that it could only wait behind a gap forever, and a
timestamp from the future. Such an event is not stored and not acked, and the reason is logged.

Presence (`state`, retained, with `boot`) is ordered by `protocol.messages.State.supersedes`,
which this core reuses rather than restates; `expiry.presence_event` says what a change means
for the parcels' deadline clocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Generic, Protocol, TypeVar


class HasSeq(Protocol):
    """Anything with a cabinet sequence number (a stored event row, a decoded event)."""

    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=HasSeq)


class Delivery(StrEnum):
    """What an incoming event is, given what is stored under its `(cab, seq)`."""

    NEW = "new"  # store it
    DUPLICATE = "duplicate"  # the same event again: ignore it (still ack)
    CONFLICT = "conflict"  # a different event under a stored seq: keep the stored one, alarm


def classify_delivery(stored_id: str | None, event_id: str) -> Delivery:
    """Classify a delivery by the id stored under its `(cab, seq)` (None: nothing stored).

    A conflict means the cabinet reused a seq (a journal wiped or restored from backup): the
    stored event stays, and the new one is reported rather than silently dropped as a duplicate.
    """
    if stored_id is None:
        return Delivery.NEW
    return Delivery.DUPLICATE if stored_id == event_id else Delivery.CONFLICT


@dataclass(frozen=True)
class IngestPlan(Generic[E]):
    """What to do with a cabinet's stored, unapplied events now.

    `apply`: in this order, then set the cabinet's last applied seq to the last one's.
    `ack_upto`: publish `event-ack` with this after the commit.
    `waiting`: stored but not applied now: beyond a gap (they wait for the missing seq, which
    the cabinet resends) or beyond `limit` (the next step takes them).
    `ignored`: already applied, or a second copy of a seq.
    """

    apply: tuple[E, ...]
    ack_upto: int
    waiting: tuple[E, ...]
    ignored: tuple[E, ...]

    @property
    def applied_upto(self) -> int | None:
        """The last applied seq once `apply` is done (None: nothing to apply)."""
        return self.apply[-1].seq if self.apply else None


# The largest seq ever stored: 2^53, the last integer every JSON reader (JavaScript's doubles)
# holds exactly. A cabinet sending 1,000 events a second would reach it in 285,000 years.
MAX_SEQ = 2**53
# How far past the last applied seq an event may be stored. Seqs are gapless, and a cabinet
# resends everything not acked in seq order, so a real event lies at most its cabinet's backlog
# ahead: 10,000,000 is 115 days of one event a second, offline all along (a busy cabinet sends
# a few thousand a day). Anything beyond would wait behind a gap forever.
MAX_SEQ_AHEAD = 10_000_000
# How far ahead of the cloud's clock an event's `ts` may be. A cabinet's clock may drift, or
# start wrong until NTP corrects it; a day covers that. Old timestamps are always fine: a
# cabinet back from days offline resends its journal with the times the events happened.
MAX_TS_AHEAD = timedelta(days=1)


def refusal(*, seq: int, ts: datetime, applied_upto: int, now: datetime) -> str | None:
    """Why an incoming event must not be stored (None: store it), given its cabinet's last
    applied seq and the cloud's clock `now`.

    A refused event is not acked either: if a real cabinet did send it, it stays in that
    cabinet's journal and the log says why the cloud would not take it.
    """
    if seq > MAX_SEQ:
        return f"seq {seq} is beyond 2^53 (MAX_SEQ)"
    if seq > applied_upto + MAX_SEQ_AHEAD:
        return (
            f"seq {seq} is more than {MAX_SEQ_AHEAD:,} past the last applied seq "
            f"{applied_upto} (MAX_SEQ_AHEAD): it would wait behind a gap forever"
        )
    if ts > now + MAX_TS_AHEAD:
        return (
            f"its ts {ts.isoformat()} is more than {MAX_TS_AHEAD} ahead of the cloud's clock "
            f"{now.isoformat()} (MAX_TS_AHEAD)"
        )
    return None


def plan(*, applied_upto: int, stored: Iterable[E], limit: int | None = None) -> IngestPlan[E]:
    """Plan the next step for one cabinet, given its last applied seq and stored events.

    `stored` may hold events in any order, already-applied ones and copies. Every seq up to
    `applied_upto` is stored (it was applied), so the contiguous stored prefix runs from there.
    `limit` caps how many events to apply in one transaction; the ack still covers everything
    stored contiguously, applied or not, because storing is what makes an event safe.
    """
    if applied_upto < 0:
        raise ValueError("applied_upto counts from 0 (nothing applied)")
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1")
    by_seq: dict[int, E] = {}
    ignored: list[E] = []
    for event in stored:
        if event.seq < 1:
            raise ValueError(f"seq {event.seq} is not a cabinet sequence number (they start at 1)")
        if event.seq <= applied_upto or event.seq in by_seq:
            ignored.append(event)
        else:
            by_seq[event.seq] = event
    ack_upto = contiguous_upto(by_seq, start=applied_upto)
    last_to_apply = ack_upto if limit is None else min(ack_upto, applied_upto + limit)
    to_apply = tuple(by_seq[seq] for seq in range(applied_upto + 1, last_to_apply + 1))
    waiting = tuple(by_seq[seq] for seq in sorted(by_seq) if seq > last_to_apply)
    return IngestPlan(apply=to_apply, ack_upto=ack_upto, waiting=waiting, ignored=tuple(ignored))


def contiguous_upto(stored_seqs: Iterable[int], start: int = 0) -> int:
    """Return the highest n ≥ `start` such that every seq in (`start`, n] is in `stored_seqs`."""
    seqs = set(stored_seqs)
    upto = start
    while upto + 1 in seqs:
        upto += 1
    return upto
