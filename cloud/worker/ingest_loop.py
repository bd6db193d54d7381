"""Events → store → apply → event-ack: the worker's ingestion of one batch of deliveries.

Decode every delivery (a malformed or foreign message is logged with its reason and dropped),
then, for the batch's cabinets in one transaction per TXN_MAX_EVENTS events: lock their rows
(in id order), store their events (one `INSERT ... ON CONFLICT DO NOTHING`), apply each
cabinet's stored events in seq order (`apply_locked`), commit once; only then publish the
`codes.put` of the deposits written set-based (claimed in that transaction,
`cloud.services.deposit_batch`) and each cabinet's `event-ack` with the highest seq stored
without a gap. One commit per few dozen
events instead of two per cabinet is what `locker bench cloud` measures.

If that transaction fails (after the retries a deadlock or serialization failure gets), the
batch is done again cabinet by cabinet, the way a single cabinet is always done (and a cabinet
with more pending events than one apply step takes continues that way): `store_events`
(committed: now the events are safe), `apply_pending` until it has nothing more, `event-ack`.
So one bad cabinet costs the batch its speed, never the other cabinets their events.

Redelivered and reordered events are harmless: storing is idempotent by (cab, seq) and applying
runs strictly in seq order under the cabinet's row lock, whichever worker gets there first; a
cabinet's events stored by another worker's uncommitted transaction are simply not seen yet, and
that worker, holding the lock after us, applies them.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from cloud import metrics
from cloud.core.codes import RandBelow
from cloud.db import repo
from cloud.db.engine import write_session
from cloud.services.deposit_batch import DepositBatch
from cloud.services.ingest import (
    APPLY_BATCH,
    ApplyResult,
    UnknownCabinet,
    apply_locked,
    apply_pending,
    stage_events,
    store_events,
)
from cloud.worker.mqtt import Received
from protocol.codec import decode_event, encode
from protocol.errors import MessageError, TopicError
from protocol.messages import EventAck, EventBase, ParcelDeposited, ParcelDepositedData
from protocol.topics import TopicKind, cmd_topic, event_ack_topic, parse_topic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]
# A block whose publishes go out together as it ends (`MqttClient.burst`).
Burst = Callable[[], AbstractContextManager[object]]

# A deadlock, a serialization failure or a locked SQLite file is worth a few quick retries; past
# them the events stay unacked and the cabinet sends them again.
DB_ATTEMPTS = 5
DB_RETRY_MAX_WAIT_S = 1.0
_SHOWN_CHARS = 200  # of a hostile topic in a log line
# Events per transaction. An event other than a new parcel's deposit gets a savepoint, and
# PostgreSQL caches 64 subtransactions per backend: past that every visibility check reads
# pg_subtrans, and a 400-event transaction cost twice per event what a 50-event one did
# (`locker bench cloud`).
# Deposits of new parcels are written set-based, without one (`cloud.services.deposit_batch`):
# up to TXN_MAX_EVENTS events go in a transaction, of which at most TXN_MAX_SAVEPOINTS others.
TXN_MAX_EVENTS = 200
TXN_MAX_SAVEPOINTS = 50


@dataclass
class IngestStats:
    """Counters of what a loop has done, for logs and tests."""

    received: int = 0
    dropped: int = 0
    stored: int = 0
    applied: int = 0
    batched: int = 0  # of the applied, deposits written set-based, their codes.put sent here
    commands_sent: int = 0  # codes.put published right after their transaction committed
    acks_sent: int = 0
    failed_batches: int = 0  # a cabinet's events left unacked after a database error
    fallback_batches: int = 0  # batches that failed as one transaction, done cabinet by cabinet
    cabinets: set[str] = field(default_factory=set)


def _chunks(
    by_cab: dict[str, list[EventBase]], max_events: int, max_others: int | None = None
) -> list[dict[str, list[EventBase]]]:
    """Split a batch into groups of whole cabinets holding about `max_events` events each, and
    about `max_others` events other than deposits (None: no such limit)."""
    chunks: list[dict[str, list[EventBase]]] = []
    size = others = max_events
    for cab, events in by_cab.items():
        more = sum(1 for event in events if not isinstance(event, ParcelDeposited))
        if size + len(events) > max_events or (
            max_others is not None and others + more > max_others
        ):
            chunks.append({})
            size = others = 0
        chunks[-1][cab] = events
        size += len(events)
        others += more
    return chunks


def _deposits(by_cab: dict[str, list[EventBase]]) -> list[ParcelDepositedData]:
    return [
        event.data
        for events in by_cab.values()
        for event in events
        if isinstance(event, ParcelDeposited)
    ]


def decode_delivery(received: Received) -> EventBase:
    """Return the event a delivery carries; raise MessageError or TopicError saying why not."""
    where = parse_topic(received.topic)
    if where.kind is not TopicKind.EVENT:
        raise TopicError(f"topic {received.topic!r} is not an event topic")
    return decode_event(received.payload, cab=where.cab)


class IngestLoop:
    """Stores and applies batches of event deliveries, then acks them to their cabinets."""

    def __init__(
        self,
        *,
        engine: Engine,
        publish: Publish,
        seal_key: bytes,
        clock: Callable[[], datetime],
        randbelow: RandBelow = secrets.randbelow,
        burst: Burst = nullcontext,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.burst = burst
        self.seal_key = seal_key
        self.clock = clock
        self.randbelow = randbelow
        self.stats = IngestStats()

    def handle(self, deliveries: Iterable[Received]) -> dict[str, int]:
        """Process a batch of deliveries; return the `upto` acked to each cabinet."""
        by_cab: dict[str, list[EventBase]] = {}
        received_at: dict[str, datetime] = {}
        for received in deliveries:
            self.stats.received += 1
            try:
                event = decode_delivery(received)
            except (MessageError, TopicError) as err:
                self.stats.dropped += 1
                metrics.EVENTS_DROPPED.inc()
                # The payload is not logged: it may hold a phone number, which no log may show.
                log.warning(
                    "dropped a message on %r (%d bytes): %s",
                    received.topic[:_SHOWN_CHARS],
                    len(received.payload),
                    err,
                )
                continue
            by_cab.setdefault(event.cab, []).append(event)
            received_at.setdefault(event.cab, received.received_at)
        acked: dict[str, int] = {}
        for chunk in _chunks(by_cab, TXN_MAX_EVENTS, TXN_MAX_SAVEPOINTS):
            before = (self.stats.stored, self.stats.applied, self.stats.dropped)
            before_acks, before_fallbacks = self.stats.acks_sent, self.stats.fallback_batches
            acked.update(self._handle_chunk(chunk, received_at))
            self._count(chunk, received_at, before, before_acks, before_fallbacks)
        return acked

    def _count(
        self,
        chunk: dict[str, list[EventBase]],
        received_at: dict[str, datetime],
        before: tuple[int, int, int],
        before_acks: int,
        before_fallbacks: int,
    ) -> None:
        """Add what one chunk did to this process's counters (cloud.metrics)."""
        stored, applied, dropped = before
        metrics.EVENTS_INGESTED.inc(self.stats.stored - stored)
        metrics.EVENTS_APPLIED.inc(self.stats.applied - applied)
        metrics.EVENTS_DROPPED.inc(self.stats.dropped - dropped)
        metrics.EVENT_ACKS.inc(self.stats.acks_sent - before_acks)
        metrics.INGEST_FALLBACKS.inc(self.stats.fallback_batches - before_fallbacks)
        # Wall clock, as `received_at` is: the worker's own (maybe offset) clock is for parcels.
        done = datetime.now(UTC)
        types: Counter[str] = Counter()
        observe = metrics.INGEST_LAG.observe
        for cab, events in chunk.items():
            lag_s = max(0.0, (done - received_at[cab]).total_seconds())
            for event in events:
                types[event.type] += 1
                observe(lag_s)
        for type_, count in types.items():
            metrics.EVENTS_RECEIVED.labels(type=type_).inc(count)

    def _handle_chunk(
        self, by_cab: dict[str, list[EventBase]], received_at: dict[str, datetime]
    ) -> dict[str, int]:
        for events in by_cab.values():
            # Sorted so that concurrent workers insert overlapping seqs in one order.
            events.sort(key=lambda event: event.seq)
        try:
            unknown, stored, results, batch = self._store_and_apply_all(by_cab, received_at)
        except Exception as err:  # retried already if it was transient (OperationalError)
            self.stats.fallback_batches += 1
            log.warning(
                "a batch of %d cabinets failed as one transaction (%s); doing it cabinet by "
                "cabinet",
                len(by_cab),
                " ".join(str(err).split())[:300] or type(err).__name__,
            )
            return self._one_by_one(by_cab, received_at)
        acked: dict[str, int] = {}
        for cab in unknown:
            self.stats.dropped += len(by_cab[cab])
            log.warning("dropped %d event(s): no cabinet %r in the registry", len(by_cab[cab]), cab)
        self.stats.stored += sum(stored.values())
        self.stats.batched += batch.taken
        more: list[str] = []
        # What one commit allows goes out in one burst: paho's thread is woken once for it.
        with self.burst():
            for send in batch.sends:  # committed: now the cabinets may have them
                self.publish(cmd_topic(send.cab), send.payload)
                self.stats.commands_sent += 1
            metrics.COMMANDS_SENT.labels(kind="first").inc(len(batch.sends))
            for cab, result in results.items():
                self.stats.applied += result.applied
                self.stats.cabinets.add(cab)
                if result.more:  # more pending than one apply step takes: cabinet by cabinet
                    more.append(cab)
                    continue
                self._ack(cab, result.ack_upto)
                acked[cab] = result.ack_upto
        for cab in more:  # after the burst: these take transactions of their own
            upto = self._ingest(cab, by_cab[cab], received_at[cab])
            if upto is not None:
                acked[cab] = upto
        return acked

    def _one_by_one(
        self, by_cab: dict[str, list[EventBase]], received_at: dict[str, datetime]
    ) -> dict[str, int]:
        acked: dict[str, int] = {}
        for cab, events in by_cab.items():
            upto = self._ingest(cab, events, received_at[cab])
            if upto is not None:
                acked[cab] = upto
        return acked

    def _ack(self, cab: str, upto: int) -> None:
        if upto > 0:
            # After the commit: every seq ≤ upto is durably stored, so the cabinet may forget it.
            self.publish(event_ack_topic(cab), encode(EventAck(upto=upto)))
            self.stats.acks_sent += 1

    @retry(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(DB_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.05, max=DB_RETRY_MAX_WAIT_S),
        reraise=True,
    )
    def _store_and_apply_all(
        self, by_cab: dict[str, list[EventBase]], received_at: dict[str, datetime]
    ) -> tuple[list[str], dict[str, int], dict[str, ApplyResult], DepositBatch]:
        """Lock, store and apply every cabinet of the batch in one transaction; commit once.

        The locks come first, all of them, in id order: a transaction that holds one cabinet
        never waits for a lock another holder of it wants (no deadlock between workers).
        """
        with Session(self.engine) as session:
            write_session(session)
            try:
                cabinets = repo.lock_cabinets(session=session, cabs=by_cab)
                known = {cab: events for cab, events in by_cab.items() if cab in cabinets}
                # Held for the transaction: the session's identity map is weak, and with these
                # rows in it, applying reads each cabinet's site, and the doors its events other
                # than deposits name, without SQL.
                doors = [
                    door
                    for events in known.values()
                    for event in events
                    if not isinstance(event, ParcelDeposited)
                    and isinstance(door := getattr(event.data, "compartment", None), str)
                ]
                preloaded = repo.sites_and_compartments(session=session, cabs=known, doors=doors)
                # Read under the locks, before storing: the events not stored yet are then
                # known, and inserted once applied (`stage_events`, `DepositBatch.defer`).
                pending = repo.pending_events(
                    session=session, cabinets=[cabinets[cab] for cab in known], limit=APPLY_BATCH
                )
                # New parcels' deposits are written set-based, a statement per table for all.
                batch = DepositBatch.prepare(session=session, deposits=_deposits(known), cabs=known)
                fresh: dict[str, dict[int, EventBase]] = {}  # stored now: not decoded again
                stored = stage_events(
                    session=session,
                    by_cab=known,
                    received_at=received_at,
                    applied_upto={cab: cabinets[cab].applied_upto for cab in known},
                    inserted=fresh,
                    unapplied=pending,
                    batch=batch,
                )
                deferred = batch.deferred_events()
                for cab in list(pending):
                    mine = deferred.get(cab, [])
                    if len(mine) == stored[cab]:  # every new event deferred: the list is whole
                        pending[cab] = sorted([*pending[cab], *mine], key=lambda row: row.seq)
                    else:  # some went into the table at once: read them there
                        del pending[cab]
                now = self.clock()
                results = {
                    cab: apply_locked(
                        session=session,
                        cabinet=cabinets[cab],
                        now=now,
                        seal_key=self.seal_key,
                        randbelow=self.randbelow,
                        batch=batch,
                        pending=pending.get(cab),
                        decoded=fresh.get(cab),
                    )
                    for cab in sorted(known)
                }
                batch.flush(session)
                batch.drop_superseded(session)
                session.commit()
            except BaseException:
                session.rollback()
                raise
            del preloaded
        return [cab for cab in by_cab if cab not in cabinets], stored, results, batch

    def _ingest(self, cab: str, events: list[EventBase], received_at: datetime) -> int | None:
        """Store, then apply, one cabinet's events, each step committed; ack; return the upto."""
        try:
            upto = self._store_and_apply(cab, events, received_at)
        except UnknownCabinet as err:
            self.stats.dropped += len(events)
            log.warning("dropped %d event(s): %s", len(events), err)
            return None
        except SQLAlchemyError as err:  # retried already if it was transient (OperationalError)
            self.stats.failed_batches += 1
            log.error(
                "could not store events %d..%d of cabinet %s (left unacked, the cabinet resends "
                "them): %s",
                events[0].seq,
                events[-1].seq,
                cab,
                " ".join(str(err).split())[:300],
            )
            return None
        self.stats.cabinets.add(cab)
        self._ack(cab, upto)
        return upto

    @retry(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(DB_ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.05, max=DB_RETRY_MAX_WAIT_S),
        reraise=True,
    )
    def _store_and_apply(self, cab: str, events: list[EventBase], received_at: datetime) -> int:
        with Session(self.engine) as session:
            self.stats.stored += store_events(
                session=session, cab=cab, envelopes=events, now=received_at
            )
            while True:
                result = apply_pending(
                    session=session,
                    cab=cab,
                    now=self.clock(),
                    seal_key=self.seal_key,
                    randbelow=self.randbelow,
                )
                self.stats.applied += result.applied
                if not result.more:
                    return result.ack_upto
