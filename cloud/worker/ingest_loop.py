"""Events → store → apply → event-ack: the worker's ingestion of one batch of deliveries.

Per cabinet in the batch: decode (a malformed or foreign message is logged with its reason and
dropped), `store_events` (committed: now the events are safe), `apply_pending` until it has
nothing more, and only then publish `event-ack` with the highest seq stored without a gap.
Redelivered and reordered events are harmless: storing is idempotent by (cab, seq) and applying
runs strictly in seq order under the cabinet's row lock, whichever worker gets there first.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from cloud.core.codes import RandBelow
from cloud.services.ingest import UnknownCabinet, apply_pending, store_events
from cloud.worker.mqtt import Received
from protocol.codec import decode_event, encode
from protocol.errors import MessageError, TopicError
from protocol.messages import EventAck, EventBase
from protocol.topics import TopicKind, event_ack_topic, parse_topic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]

# A deadlock, a serialization failure or a locked SQLite file is worth a few quick retries; past
# them the events stay unacked and the cabinet sends them again.
DB_ATTEMPTS = 5
DB_RETRY_MAX_WAIT_S = 1.0
_SHOWN_CHARS = 200  # of a hostile topic in a log line


@dataclass
class IngestStats:
    """Counters of what a loop has done, for logs and tests."""

    received: int = 0
    dropped: int = 0
    stored: int = 0
    applied: int = 0
    acks_sent: int = 0
    failed_batches: int = 0
    cabinets: set[str] = field(default_factory=set)


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
    ) -> None:
        self.engine = engine
        self.publish = publish
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
        for cab, events in by_cab.items():
            upto = self._ingest(cab, events, received_at[cab])
            if upto is not None:
                acked[cab] = upto
        return acked

    def _ingest(self, cab: str, events: list[EventBase], received_at: datetime) -> int | None:
        # Sorted so that concurrent workers insert overlapping seqs in one order (no deadlock).
        events.sort(key=lambda event: event.seq)
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
        if upto > 0:
            # After the commits: every seq ≤ upto is durably stored, so the cabinet may forget it.
            self.publish(event_ack_topic(cab), encode(EventAck(upto=upto)))
            self.stats.acks_sent += 1
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
