"""The worker's batched ingestion: many cabinets in one transaction, on SQLite and PostgreSQL.

One batch of deliveries is locked, stored and applied in one transaction and committed once,
then event-acked; a batch that fails in the middle is redone cabinet by cabinet. Exactly once
holds throughout: each event stored once, applied once, in seq order, stopping at a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session, col, select

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Cabinet, CommandOutbox, InboxEvent, NoticeOutbox, Parcel, ParcelEvent
from cloud.worker import IngestLoop
from cloud.worker.mqtt import Received
from protocol.codec import decode_command, decode_event_ack, encode
from protocol.messages import Ack, EventBase
from protocol.topics import event_topic
from tests.cloud.db.builders import SEAL_KEY, T0, deposited, register_cabinet
from tests.cloud.worker.harness import ScriptedCabinet, count, distinct, make_worker, start_workers
from tests.services import Mosquitto

NOW = T0 + timedelta(minutes=5)
CABS = ("CAB-1", "CAB-2", "CAB-3", "CAB-4")


def deposit(cab: str, seq: int) -> EventBase:
    """Deposit `seq` of cabinet `cab`, of a parcel no other cabinet has."""
    event = deposited(seq, cab)
    return event.model_copy(
        update={
            "data": event.data.model_copy(
                update={"parcel_id": f"{cab}-P{seq}", "tracking_no": f"{cab}-T{seq}"}
            )
        }
    )


def deliveries(pairs: Iterable[tuple[str, int]]) -> list[Received]:
    return [Received(event_topic(cab), encode(deposit(cab, seq)), NOW) for cab, seq in pairs]


class Acks:
    """A publisher that records the event-acks the loop sends, and the commands."""

    def __init__(self) -> None:
        self.upto: dict[str, list[int]] = {}
        self.commands: list[tuple[str, str]] = []  # (cabinet, command id)

    def __call__(self, topic: str, payload: bytes) -> bool:
        cab, kind = topic.split("/")[2:4]
        if kind == "cmd":
            self.commands.append((cab, decode_command(payload, cab=cab).id))
            return True
        self.upto.setdefault(cab, []).append(decode_event_ack(payload).upto)
        return True


@pytest.fixture
def cabinets(engine: Engine) -> Engine:
    with Session(engine) as session:
        for cab in CABS:
            register_cabinet(session, cab)
    return engine


def loop(engine: Engine, acks: Acks, randbelow: Callable[[int], int] | None = None) -> IngestLoop:
    extra = {"randbelow": randbelow} if randbelow else {}
    return IngestLoop(engine=engine, publish=acks, seal_key=SEAL_KEY, clock=lambda: NOW, **extra)


def applied_seqs(engine: Engine, cab: str) -> list[int]:
    with Session(engine) as session:
        rows = session.exec(
            select(InboxEvent.seq)
            .where(InboxEvent.cabinet_id == cab, col(InboxEvent.applied))
            .order_by(col(InboxEvent.seq))
        )
        return list(rows)


def applied_upto(engine: Engine, cab: str) -> int:
    with Session(engine) as session:
        return session.get(Cabinet, cab).applied_upto


def test_one_batch_of_cabinets_with_duplicates_and_a_gap(cabinets: Engine) -> None:
    acks = Acks()
    ingest = loop(cabinets, acks)
    order = [("CAB-1", 2), ("CAB-2", 1), ("CAB-1", 1), ("CAB-1", 2), ("CAB-1", 5)]
    order += [("CAB-2", 1), ("CAB-1", 3), ("CAB-2", 2)]
    batch = deliveries(order)
    batch.append(Received(event_topic("CAB-9"), encode(deposit("CAB-9", 1)), NOW))  # unknown
    batch.append(Received(event_topic("CAB-3"), b'{"v":1,"seq":"x"}', NOW))  # malformed

    assert ingest.handle(batch) == {"CAB-1": 3, "CAB-2": 2}
    assert ingest.stats.fallback_batches == 0  # one transaction did it all
    assert acks.upto == {"CAB-1": [3], "CAB-2": [2]}  # not 5: seq 4 is missing
    assert ingest.stats.dropped == 2
    assert (ingest.stats.stored, ingest.stats.applied) == (6, 5)
    assert applied_seqs(cabinets, "CAB-1") == [1, 2, 3]  # 5 waits for 4
    assert applied_seqs(cabinets, "CAB-2") == [1, 2]
    assert count(cabinets, InboxEvent, InboxEvent.cabinet_id == "CAB-1") == 4
    assert count(cabinets, Parcel) == 5
    assert count(cabinets, InboxEvent, InboxEvent.cabinet_id == "CAB-9") == 0

    # The missing seq arrives with a redelivery of 5: the gap fills, 4 and 5 apply, once each.
    assert ingest.handle(deliveries([("CAB-1", 5), ("CAB-1", 4), ("CAB-2", 2)])) == {
        "CAB-1": 5,
        "CAB-2": 2,
    }
    assert acks.upto == {"CAB-1": [3, 5], "CAB-2": [2, 2]}
    assert applied_seqs(cabinets, "CAB-1") == [1, 2, 3, 4, 5]
    assert applied_upto(cabinets, "CAB-1") == 5
    assert count(cabinets, Parcel) == distinct(cabinets, Parcel.parcel_id) == 7
    assert count(cabinets, ParcelEvent) == distinct(cabinets, ParcelEvent.parcel_row_id) == 7
    assert count(cabinets, CommandOutbox, CommandOutbox.type == "codes.put") == 7
    assert count(cabinets, NoticeOutbox) == 7
    # Each deposit's codes.put went out after its commit, once, and its row says it was sent.
    with Session(cabinets) as session:
        sent = session.exec(select(CommandOutbox.cabinet_id, CommandOutbox.id)).all()
        assert sorted(acks.commands) == sorted(sent)
        assert {row.send_count for row in session.exec(select(CommandOutbox))} == {1}


def test_a_batch_that_fails_midway_commits_nothing_and_is_redone_cabinet_by_cabinet(
    cabinets: Engine,
) -> None:
    calls = []

    def crashing_once(n: int) -> int:
        # The third code drawn in the batch: two deposits are applied in its transaction.
        calls.append(n)
        if len(calls) == 3:
            raise RuntimeError("the process dies here")
        return len(calls) * 7919 % n

    acks = Acks()
    ingest = loop(cabinets, acks, randbelow=crashing_once)
    batch = deliveries([(cab, seq) for seq in (1, 2) for cab in CABS])

    assert ingest.handle(batch) == dict.fromkeys(CABS, 2)
    assert ingest.stats.fallback_batches == 1
    # Redone cabinet by cabinet: 3 codes in the failed transaction (rolled back), then 8.
    assert len(calls) == 3 + 8
    assert acks.upto == {cab: [2] for cab in CABS}
    for cab in CABS:
        assert applied_seqs(cabinets, cab) == [1, 2]
    assert count(cabinets, Parcel) == distinct(cabinets, Parcel.parcel_id) == 8
    assert count(cabinets, ParcelEvent) == 8
    assert count(cabinets, CommandOutbox, CommandOutbox.type == "codes.put") == 8
    assert count(cabinets, NoticeOutbox) == 8


def test_two_workers_on_interleaved_cabinets_apply_each_event_once(
    cabinets: Engine, mosquitto: Mosquitto
) -> None:
    n = 15
    peers = [ScriptedCabinet(mosquitto, cab) for cab in CABS]
    workers = start_workers(
        make_worker(cabinets, mosquitto, "w1"), make_worker(cabinets, mosquitto, "w2")
    )
    try:
        # Every cabinet's events interleaved with the others', and each seq sent twice.
        for seq in [*range(1, n + 1), *range(1, n + 1)]:
            for peer in peers:
                peer.publish_events([deposit(peer.cab, seq)])
        for peer in peers:
            peer.wait_acked(n)
            peer.wait_commands(n)
    finally:
        for worker in workers:
            worker.stop()
        for peer in peers:
            peer.close()
    assert all(worker.ingest.stats.received for worker in workers)
    for cab in CABS:
        assert applied_seqs(cabinets, cab) == list(range(1, n + 1))
        assert applied_upto(cabinets, cab) == n
    total = n * len(CABS)
    assert count(cabinets, Parcel) == distinct(cabinets, Parcel.parcel_id) == total
    assert count(cabinets, ParcelEvent) == total
    assert count(cabinets, CommandOutbox, CommandOutbox.type == "codes.put") == total


def test_acks_of_a_batch_are_recorded_together(cabinets: Engine) -> None:
    from cloud.worker import CommandDispatcher

    published = Acks()
    ingest = loop(cabinets, published)
    ingest.handle(deliveries([("CAB-1", 1), ("CAB-1", 2), ("CAB-2", 1)]))
    assert len(published.commands) == 3  # the ingest loop sent each codes.put after its commit
    sent: list[bytes] = []
    commands = CommandDispatcher(engine=cabinets, publish=lambda _t, p: sent.append(p))
    assert commands.tick(NOW).sent == 0  # claimed already: the dispatcher sends none again
    with Session(cabinets) as session:
        rows = session.exec(select(CommandOutbox).order_by(col(CommandOutbox.created_at))).all()
    by_cab = {(row.cabinet_id, row.id) for row in rows}
    (c1, c2) = sorted(cid for cab, cid in by_cab if cab == "CAB-1")
    (c3,) = [cid for cab, cid in by_cab if cab == "CAB-2"]

    recorded = commands.record_acks(
        acks=[
            ("CAB-1", Ack(cmd=c1, ok=True)),
            ("CAB-1", Ack(cmd=c1, ok=True)),  # the same ack twice in one batch
            ("CAB-1", Ack.failure(c2, "no such compartment")),
            ("CAB-1", Ack(cmd=c3, ok=True)),  # another cabinet's command: changes nothing
            ("CAB-2", Ack(cmd="unknown", ok=True)),
        ],
        now=NOW,
    )
    assert recorded == 2
    with Session(cabinets) as session:
        one, two, three = (session.get(CommandOutbox, cid) for cid in (c1, c2, c3))
        assert (one.ack_ok, one.ack_error, one.acked_at) == (True, None, NOW)
        assert (two.ack_ok, two.ack_error) == (False, "no such compartment")
        assert three.acked_at is None
    assert commands.record_acks(acks=[("CAB-2", Ack(cmd=c3, ok=True))], now=NOW) == 1


def test_a_batch_is_cut_into_transactions_of_whole_cabinets() -> None:
    from cloud.worker.ingest_loop import _chunks

    by_cab = {
        "A": [deposit("A", s) for s in range(1, 31)],
        "B": [deposit("B", s) for s in range(1, 31)],
        "C": [deposit("C", s) for s in range(1, 81)],  # more than one transaction's worth
        "D": [deposit("D", 1)],
    }
    chunks = _chunks(by_cab, 50)
    assert [list(chunk) for chunk in chunks] == [["A"], ["B"], ["C"], ["D"]]
    assert _chunks({"A": by_cab["A"][:20], "B": by_cab["B"][:20]}, 50) == [
        {"A": by_cab["A"][:20], "B": by_cab["B"][:20]}
    ]
    assert [e.seq for chunk in chunks for events in chunk.values() for e in events] == [
        e.seq for events in by_cab.values() for e in events
    ]


def test_command_acks_are_taken_before_a_backlog_of_events(engine: Engine) -> None:
    import paho.mqtt.client as mqtt

    from cloud.worker import MqttClient, Worker
    from protocol.topics import ack_topic, event_ack_topic

    client = MqttClient(host="127.0.0.1", port=1883, client_id="t", subscriptions=[])
    worker = Worker(engine=engine, client=client, seal_key=SEAL_KEY)

    def arrive(topic: str, payload: bytes) -> None:  # as paho's thread hands it over
        message = mqtt.MQTTMessage(topic=topic.encode())
        message.payload = payload
        client._on_message(None, None, message)

    for seq in range(1, 6):
        arrive(event_topic("CAB-1"), encode(deposit("CAB-1", seq)))
    arrive(ack_topic("CAB-1"), encode(Ack(cmd="c1", ok=True)))
    arrive(event_ack_topic("CAB-1"), b'{"v":1,"upto":1}')  # not a command ack: keeps its place
    arrive(ack_topic("CAB-2"), encode(Ack(cmd="c2", ok=True)))

    batch = worker._drain(0)
    assert [r.topic for r in batch] == [
        ack_topic("CAB-1"),
        ack_topic("CAB-2"),
        *[event_topic("CAB-1")] * 5,
        event_ack_topic("CAB-1"),
    ]
    assert worker._drain(0) == []


def test_a_worker_dead_between_commit_and_publish_loses_no_codes_put(cabinets: Engine) -> None:
    """The deposits' codes.put are written claimed and published after the commit: a worker that
    dies in between (here: its publish raises) leaves them to the dispatcher's resend."""
    from cloud.worker import CommandDispatcher

    class DiesAtFirstCommand(Acks):
        def __call__(self, topic: str, payload: bytes) -> bool:
            if topic.endswith("/cmd"):
                raise SystemExit("killed after the commit, before the publish")
            return super().__call__(topic, payload)

    ingest = loop(cabinets, DiesAtFirstCommand())
    with pytest.raises(SystemExit):
        ingest.handle(deliveries([("CAB-1", 1), ("CAB-1", 2), ("CAB-2", 1)]))
    assert count(cabinets, Parcel) == 3  # committed: the events are safe

    sent = Acks()
    commands = CommandDispatcher(engine=cabinets, publish=sent, resend_interval_s=30)
    assert commands.tick(NOW + timedelta(seconds=29)).sent == 0  # looks in flight until then
    result = commands.tick(NOW + timedelta(seconds=30))
    assert (result.sent, result.resent) == (3, 3)
    with Session(cabinets) as session:
        rows = session.exec(select(CommandOutbox.cabinet_id, CommandOutbox.id)).all()
    assert sorted(sent.commands) == sorted(rows)


def test_the_worker_recovers_when_postgresql_drops_its_connections(postgres_url: str) -> None:
    # The worker's engine does not ping at checkout (locker cloud worker): the dead connection
    # fails the first transaction after the drop, and the loop's retry takes a new one.
    upgrade(postgres_url)
    engine = make_engine(postgres_url, pool_pre_ping=False)
    try:
        with Session(engine) as session:
            register_cabinet(session, "CAB-1")
        acks = Acks()
        ingest = loop(engine, acks)
        assert ingest.handle(deliveries([("CAB-1", 1)])) == {"CAB-1": 1}
        with engine.connect() as connection:  # the pool's connection, the one the loop used
            before = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = make_engine(postgres_url)
        try:
            with admin.connect() as connection:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        finally:
            admin.dispose()

        assert ingest.handle(deliveries([("CAB-1", 2)])) == {"CAB-1": 2}
        assert ingest.stats.fallback_batches == 0  # the batch's own retry did it
        assert acks.upto == {"CAB-1": [1, 2]}
        assert applied_seqs(engine, "CAB-1") == [1, 2]
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != before
    finally:
        engine.dispose()


def test_a_lingering_worker_waits_a_moment_for_more_deliveries(engine: Engine) -> None:
    """With `linger_s`, a delivery arriving while the worker waits after the first joins its
    batch (one transaction for both); without it, the batch is what had already arrived."""
    import queue

    import paho.mqtt.client as mqtt

    from cloud.worker import MqttClient, Worker
    from cloud.worker.mqtt import Received

    class ArrivingQueue(queue.Queue[Received]):
        """Hands over `later` the moment the worker waits with a timeout (no sleep)."""

        def __init__(self, later: list[Received]) -> None:
            super().__init__()
            self.later, self.waits = later, []

        def get(self, block: bool = True, timeout: float | None = None) -> Received:
            if block and timeout and self.later:
                self.waits.append(timeout)
                self.put(self.later.pop(0))
            return super().get(block, timeout)

    def received(seq: int) -> Received:
        message = mqtt.MQTTMessage(topic=event_topic("CAB-1").encode())
        message.payload = encode(deposit("CAB-1", seq))
        client = MqttClient(host="127.0.0.1", port=1883, client_id="t", subscriptions=[])
        client._on_message(None, None, message)
        return client.inbox.get_nowait()

    for linger_s, expected in ((0.5, [1, 2]), (0.0, [1])):
        client = MqttClient(host="127.0.0.1", port=1883, client_id="t", subscriptions=[])
        worker = Worker(engine=engine, client=client, seal_key=SEAL_KEY, linger_s=linger_s)
        client.inbox = inbox = ArrivingQueue([received(2)])
        inbox.put(received(1))
        batch = worker._drain(0)
        assert [decode_seq(r.payload) for r in batch] == expected, linger_s
        # It waited at most the linger for the second, and not at all without one.
        assert all(0 < wait <= linger_s for wait in inbox.waits) and bool(inbox.waits) == bool(
            linger_s
        )


def decode_seq(payload: bytes) -> int:
    import json

    return json.loads(payload)["seq"]
