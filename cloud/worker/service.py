"""The cloud worker: one thread that owns every database write the MQTT side causes.

paho's thread only queues deliveries (`cloud.worker.mqtt`); `Worker.run` drains the queue in
batches and routes them: events to `IngestLoop`, presence to `PresenceTracker`, command acks to
`CommandDispatcher.record_ack`. The `codes.put` of a new parcel's deposit is published by the
ingest loop right after the transaction that wrote it (`cloud.services.deposit_batch`); after a
batch whose other events may have queued commands, and at least every `dispatch_every_s`, the
dispatcher publishes what is due (those, and resends); the same tick runs the housekeeper
(`cloud.worker.schedule`): reminders and expiry, and notices when given a notice dispatcher.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from cloud import metrics
from cloud.core.codes import RandBelow
from cloud.db.outbox_signal import WEBHOOK_ROWS_COMMITTED, CommitSignal
from cloud.worker.clock import utc_now
from cloud.worker.commands import DEFAULT_RESEND_INTERVAL_S, CommandDispatcher
from cloud.worker.ingest_loop import IngestLoop
from cloud.worker.mqtt import MqttClient, Received
from cloud.worker.presence import PresenceTracker
from cloud.worker.schedule import Housekeeper, NoticeTicker
from protocol.codec import decode_ack, decode_state
from protocol.errors import MessageError, TopicError
from protocol.topics import (
    ACK_SUBSCRIPTION,
    EVENT_SUBSCRIPTION,
    SHARED_EVENT_SUBSCRIPTION,
    STATE_SUBSCRIPTION,
    TopicKind,
    parse_topic,
)

log = logging.getLogger(__name__)

# Acks go to any one worker; presence goes to every worker, because a shared subscription gets
# no retained messages, and the retained states are how a starting worker learns who is online.
SHARED_ACK_SUBSCRIPTION = f"$share/cloud/{ACK_SUBSCRIPTION}"

# Deliveries handled per batch (then due commands go out): more amortises the commits, fewer
# bounds the latency of a `codes.put`. The ingest loop commits every TXN_MAX_EVENTS events.
BATCH_MAX = 200
# Once a delivery arrives, wait this long for more before handling the batch. A transaction,
# its locks and its commit cost about the same for 1 event as for 30, so on a quiet worker
# (events trickling in, batches of a few) this is most of the CPU per event; a few ms of
# patience makes the batches bigger (`locker bench cloud`, docs/benchmarks.md). The class
# waits none; `locker cloud worker` takes LOCKER_CLOUD_WORKER_LINGER_MS (10 ms by default).
LINGER_S = 0.0
DISPATCH_EVERY_S = 1.0
# At most one webhook tick this often while rows keep coming: a tick per commit would cost more
# than the sends, and a few dozen events' rows go out in one round.
WEBHOOKS_EVERY_S = 0.2
# The webhook thread sleeps until this process commits a webhook outbox row
# (`cloud.db.outbox_signal`); this slow poll finds the rows other processes commit (the API's)
# and the retries coming due (the first one 2.5 s or more after the failure).
WEBHOOKS_FALLBACK_S = 2.0


def subscriptions(*, shared: bool) -> list[str]:
    """Return the worker's subscriptions: shared ones where the broker has them."""
    if shared:
        return [SHARED_EVENT_SUBSCRIPTION, STATE_SUBSCRIPTION, SHARED_ACK_SUBSCRIPTION]
    return [EVENT_SUBSCRIPTION, STATE_SUBSCRIPTION, ACK_SUBSCRIPTION]


@dataclass
class Publisher:
    """Publishes through an MqttClient; a seam tests replace to drop or record messages."""

    client: MqttClient

    def __call__(self, topic: str, payload: bytes) -> bool:
        return self.client.publish(topic, payload)


class Worker:
    """Ingestion, presence and command dispatch over one broker connection and one database."""

    def __init__(
        self,
        *,
        engine: Engine,
        client: MqttClient,
        seal_key: bytes,
        clock: Callable[[], datetime] = utc_now,
        randbelow: RandBelow = secrets.randbelow,
        resend_interval_s: float = DEFAULT_RESEND_INTERVAL_S,
        dispatch_every_s: float = DISPATCH_EVERY_S,
        linger_s: float = LINGER_S,
        publish: Callable[[str, bytes], object] | None = None,
        notices: NoticeTicker | None = None,
        webhooks: NoticeTicker | None = None,
        webhooks_fallback_s: float = WEBHOOKS_FALLBACK_S,
        webhook_rows: CommitSignal = WEBHOOK_ROWS_COMMITTED,
    ) -> None:
        self.engine = engine
        self.client = client
        self.clock = clock
        self.dispatch_every_s = dispatch_every_s
        self.linger_s = linger_s
        publish = publish or Publisher(client)
        self.ingest = IngestLoop(
            engine=engine,
            publish=publish,
            seal_key=seal_key,
            clock=clock,
            randbelow=randbelow,
            burst=client.burst,
        )
        self.presence = PresenceTracker(engine=engine, seal_key=seal_key)
        self.commands = CommandDispatcher(
            engine=engine,
            publish=publish,
            resend_interval_s=resend_interval_s,
            burst=client.burst,
        )
        # Expiry, command resends and notices (when a notice dispatcher is given), on `clock`.
        self.housekeeper = Housekeeper(
            engine=engine,
            seal_key=seal_key,
            commands=self.commands,
            notices=notices,
        )
        # The ERP webhooks go out from a thread of their own: a slow or hanging receiver (up to
        # its timeout per send) must not hold up ingestion. It wakes at each commit of a webhook
        # outbox row in this process, so an event's commit-to-receiver time stays well under a
        # second (docs/webhooks.md), and idles otherwise.
        self.webhooks = webhooks
        self.webhooks_fallback_s = webhooks_fallback_s
        self.webhook_rows = webhook_rows
        self._webhooks_thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # A cabinet's newest state that could not be stored (the database refused): tried again
        # on every dispatch tick until it is. Waiting for the retained state to come again would
        # wait for this worker's next subscribe, which a database outage does not cause: the
        # cloud would keep the cabinet offline (its parcels' deadline clocks paused) for good.
        self._unstored_states: dict[str, Received] = {}

    # --- lifecycle --------------------------------------------------------------------------------

    def run(self) -> None:
        """Connect and work until `stop()` (blocks the calling thread)."""
        metrics.watch_inbox(self.client.inbox.qsize)
        self.client.start()
        if self.webhooks is not None:
            self._webhooks_thread = threading.Thread(
                target=self._send_webhooks, name=f"webhooks-{self.client.client_id}"
            )
            self._webhooks_thread.start()
        try:
            self._loop()
        finally:
            self.stopping.set()
            if self._webhooks_thread is not None:
                self.webhook_rows.notify()  # wakes the webhook thread to see `stopping`
                self._webhooks_thread.join()
            self.client.stop()

    def start(self) -> Worker:
        """Run in a thread of its own; return self."""
        self._thread = threading.Thread(target=self.run, name=f"worker-{self.client.client_id}")
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        """Whether the thread `start()` made is still working."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 10) -> None:
        """Finish the batch in hand, disconnect and return."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # --- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_dispatch = 0.0
        while not self.stopping.is_set():
            wait_s = max(0.0, min(next_dispatch - time.monotonic(), 0.2))
            batch = self._drain(wait_s)
            try:
                urgent = self.handle(batch) if batch else False
            except Exception:
                # A bug must not kill the worker: what the batch held stays unacked and comes back.
                log.exception("a batch of %d deliveries failed", len(batch))
                urgent = False
            if self.stopping.is_set():
                break  # a stopping worker claims no more commands: it might not publish them
            if urgent or time.monotonic() >= next_dispatch:
                self._dispatch()
                next_dispatch = time.monotonic() + self.dispatch_every_s

    def _send_webhooks(self) -> None:
        assert self.webhooks is not None
        # Read before the first tick: a row committed during it wakes the wait that follows.
        seen = self.webhook_rows.generation
        while not self.stopping.is_set():
            started = time.monotonic()
            more = False
            try:
                more = bool(getattr(self.webhooks.tick(self.clock()), "more", False))
            except Exception as err:  # the next fallback poll tries again
                log.error("webhook dispatch failed: %s", " ".join(str(err).split())[:300])
            if not more:
                seen = self.webhook_rows.wait(seen, self.webhooks_fallback_s)
                self.stopping.wait(started + WEBHOOKS_EVERY_S - time.monotonic())

    def _drain(self, wait_s: float) -> list[Received]:
        # Every command ack waiting, first: recording them is cheap, and late they cause resends.
        acks: list[Received] = []
        while True:
            try:
                acks.append(self.client.acks.get_nowait())
            except queue.Empty:
                break
        if acks:
            wait_s = 0.0
        try:
            batch = [
                self.client.inbox.get(timeout=wait_s) if wait_s else self.client.inbox.get_nowait()
            ]
        except queue.Empty:
            return acks
        batch = acks + batch
        until = time.monotonic() + self.linger_s
        while len(batch) < BATCH_MAX + len(acks):
            try:
                batch.append(self.client.inbox.get_nowait())
            except queue.Empty:
                left = until - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.client.inbox.get(timeout=left))
                except queue.Empty:
                    break
        return batch

    def _dispatch(self) -> None:
        for received in list(self._unstored_states.values()):
            self._state(received)
        self.housekeeper.tick(self.clock())  # each step logs its own failure; the next tick retries

    def handle(self, batch: list[Received]) -> bool:
        """Route one batch of deliveries; return whether commands may be due at once.

        Events keep their arrival order per cabinet; commands are due after events were applied
        (a deposit's `codes.put`) or a cabinet reconnected.
        """
        urgent = False
        events: list[Received] = []
        acks: list[Received] = []
        for received in batch:
            try:
                kind = parse_topic(received.topic).kind
            except TopicError as err:
                log.warning("dropped a message: %s", err)
                continue
            if kind is TopicKind.EVENT:
                events.append(received)
            elif kind is TopicKind.STATE:
                urgent |= self._state(received)
            elif kind is TopicKind.ACK:
                acks.append(received)
            else:
                log.warning(
                    "dropped a message on %r: the cloud does not subscribe to it", received.topic
                )
        if events:
            stats = self.ingest.stats
            applied_before, batched_before = stats.applied, stats.batched
            self.ingest.handle(events)
            # Batched deposits' codes.put went out already; any other event may have queued one.
            urgent |= stats.applied - applied_before > stats.batched - batched_before
        if acks:
            self._acks(acks)
        return urgent

    def _state(self, received: Received) -> bool:
        cab = parse_topic(received.topic).cab
        if not received.payload:
            return False  # a retained state being cleared (the cabinet was deregistered)
        try:
            state = decode_state(received.payload, cab=cab)
        except MessageError as err:
            log.warning("dropped a state message of %s: %s", cab, err)
            return False
        # A newer state of the cabinet supersedes one still waiting to be stored (and were the
        # waiting one newer, apply_state's boot order keeps it from being undone).
        self._unstored_states.pop(cab, None)
        try:
            result = self.presence.handle(state, received.received_at)
        except OperationalError as err:
            # Kept with the time it arrived, and stored by the next dispatch tick that can.
            self._unstored_states[cab] = received
            log.error(
                "could not store the presence of %s (tried again shortly): %s",
                cab,
                " ".join(str(err).split())[:300],
            )
            return False
        if result is not None and result.applied:
            metrics.PRESENCE_CHANGES.labels(presence="online" if state.online else "offline").inc()
        return result is not None and result.reconnected

    def _acks(self, batch: list[Received]) -> None:
        acks = []
        for received in batch:
            cab = parse_topic(received.topic).cab
            try:
                acks.append((cab, decode_ack(received.payload)))
            except MessageError as err:
                log.warning("dropped a command ack of %s: %s", cab, err)
        if not acks:
            return
        try:
            self.commands.record_acks(acks=acks, now=self.clock())
        except OperationalError as err:
            # Unrecorded, the commands are resent, and the cabinets ack them again.
            log.error(
                "could not record %d command acks: %s", len(acks), " ".join(str(err).split())[:300]
            )
