"""A batch of many events writes what a batch of one writes (`cloud.services.deposit_batch`).

There is one ingestion path: new parcels' deposits are left to a `DepositBatch`, written one
INSERT per table, whatever the batch's size. One batch of deliveries mixing those with
everything that must read the database first (a parcel_id deposited twice in the batch or by
two cabinets, an announced tracking number, a pickup and a resend right after deposits in the
batch, a repeated random code) is applied by the worker in one `handle`; the same events, in
the same order, by the worker one delivery per `handle` (a batch of one each) on a second
database, and cabinet by cabinet (`store_events` + `apply_pending`, the worker's fallback) on a
third: every table must end up the same, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.core import parcels as core
from cloud.core.codes import IssuedCode
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import (
    Cabinet,
    CommandOutbox,
    Compartment,
    InboxEvent,
    NoticeOutbox,
    Parcel,
    ParcelEvent,
)
from cloud.db.sealing import unseal
from cloud.services import deposit_batch
from cloud.services.ingest import apply_pending, store_events
from cloud.worker import CommandDispatcher, IngestLoop
from cloud.worker.mqtt import Received
from protocol.codec import decode_command, encode
from protocol.hashing import code_hash
from protocol.messages import EventBase
from protocol.topics import event_topic
from tests.cloud.db.builders import (
    CODE_KEY,
    PHONE,
    SEAL_KEY,
    T0,
    deposited,
    picked_up,
    register_cabinet,
    resend_requested,
)

NOW = T0 + timedelta(minutes=5)
CABS = ("CAB-1", "CAB-2", "CAB-3")
ANNOUNCED = "SF-ANNOUNCED-1"
LIVE_CODE = "11111111"


def deposit(cab: str, seq: int, *, parcel: str, tracking_no: str | None = None) -> EventBase:
    event = deposited(seq, cab)
    data = {"parcel_id": parcel, "tracking_no": tracking_no or f"T-{parcel}"}
    return event.model_copy(update={"data": event.data.model_copy(update=data)})


def scenario() -> list[EventBase]:
    """One batch's events, in delivery order."""
    return [
        deposit("CAB-1", 1, parcel="P000001"),  # batched; its first two draws are P-LIVE's code
        deposit("CAB-1", 2, parcel="P-B"),  # batched
        picked_up(3, 1, "CAB-1"),  # per event: reads P000001, deposited in this batch
        deposit("CAB-1", 4, parcel="P-C"),  # batched again after the flush
        resend_requested(5, "CAB-1"),  # per event: a new code for P-B and P-C
        deposit("CAB-2", 1, parcel="P-B"),  # P-B again, from another cabinet: refused
        deposit("CAB-2", 2, parcel="P-ANN", tracking_no=ANNOUNCED),  # completes the announcement
        deposit("CAB-2", 3, parcel="P-D"),  # batched
        deposit("CAB-3", 1, parcel="P-E"),  # batched
        deposit("CAB-3", 2, parcel="P-E"),  # P-E twice in one batch: the second is refused
    ]


class Draws:
    """A deterministic `randbelow` whose first draws repeat a live code, then each other."""

    def __init__(self) -> None:
        self.values = iter([int(LIVE_CODE)] * 3 + [*range(22222222, 99999999, 1111111)] * 2)

    def __call__(self, n: int) -> int:
        return next(self.values) % n


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def three_databases(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Engine, Engine, Engine]]:
    """Three migrated databases holding the same cabinets and the same announcement."""
    names = ("batched.db", "one-by-one.db", "per-cabinet.db")
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / name}" for name in names]
    else:
        factory = request.getfixturevalue("postgres_factory")
        urls = [factory().url for _ in names]
    engines = []
    for url in urls:
        upgrade(url)
        engine = make_engine(url)
        with Session(engine) as session:
            for cab in CABS:
                register_cabinet(session, cab)
            announce = core.Announce(
                tracking_no=ANNOUNCED, cabinet_id="CAB-2", phone=PHONE, order_no="ORDER-9"
            )
            parcel, _effects = core.apply(None, announce, T0)
            repo.store_parcel(session=session, row=None, parcel=parcel, now=T0)
            # A parcel in CAB-1 already, whose code the batch's first draws repeat.
            live = core.Deposit(
                parcel_id="P-LIVE",
                cabinet_id="CAB-1",
                compartment="A04",
                size="M",
                tracking_no="SF-LIVE",
                phone=PHONE,
                courier_id="courier-7",
                at=T0,
                code=IssuedCode(LIVE_CODE, code_hash(CODE_KEY, LIVE_CODE)),
                window_s=3600,
            )
            parcel, _effects = core.apply(None, live, T0)
            repo.store_parcel(session=session, row=None, parcel=parcel, now=T0)
            session.commit()
        engines.append(engine)
    yield engines[0], engines[1], engines[2]
    for engine in engines:
        engine.dispose()


def snapshot(engine: Engine, *, sends: bool = True) -> dict[str, Any]:
    """Every row the events wrote, with generated ids replaced by what they stand for
    (without `sends`, not how often each command was sent)."""
    with Session(engine) as session:
        parcels = session.exec(select(Parcel)).all()
        key = {p.id: f"{p.tracking_no}/{p.parcel_id}" for p in parcels}
        commands = session.exec(select(CommandOutbox)).all()
        command_key = {c.id: (c.type, c.parcel_id, c.data) for c in commands}

        def parcel_row(p: Parcel) -> tuple:
            values = p.model_dump(exclude={"id"})
            return tuple(sorted(values.items(), key=lambda item: item[0]))

        def dedupe(text: str) -> str:
            for row_id, name in key.items():
                text = text.replace(row_id, name)
            return text

        return {
            "parcels": sorted(map(repr, map(parcel_row, parcels))),
            "timeline": sorted(
                repr((key[e.parcel_row_id], e.status, e.at, e.source, e.note, e.cabinet_id, e.seq))
                for e in session.exec(select(ParcelEvent))
            ),
            "commands": sorted(
                repr(
                    (
                        c.cabinet_id,
                        c.type,
                        c.parcel_id,
                        c.data,
                        c.created_at,
                        c.expires_at,
                        c.send_count if sends else None,
                        command_key.get(c.superseded_by) if c.superseded_by else None,
                    )
                )
                for c in commands
            ),
            "notices": sorted(
                repr(
                    (
                        dedupe(n.dedupe_key),
                        key[n.parcel_row_id],
                        n.kind,
                        n.audience,
                        n.to_phone,
                        n.courier_id,
                        n.deadline,
                        n.status,
                        n.attempts,
                        n.next_attempt_at,
                        unseal(SEAL_KEY, n.code_sealed, context=n.dedupe_key)
                        if n.code_sealed
                        else None,
                    )
                )
                for n in session.exec(select(NoticeOutbox))
            ),
            "doors": sorted(
                (d.cabinet_id, d.id, d.state, d.in_service)
                for d in session.exec(select(Compartment))
            ),
            "events": sorted(
                (e.cabinet_id, e.seq, e.applied, e.anomaly)
                for e in session.exec(select(InboxEvent))
            ),
            "applied_upto": sorted((c.id, c.applied_upto) for c in session.exec(select(Cabinet))),
        }


def count_batched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the parcel_id of every deposit the batch took."""
    taken: list[str] = []
    add: Callable[..., None] = deposit_batch.DepositBatch.add

    def spy(self: deposit_batch.DepositBatch, **kwargs: Any) -> None:
        add(self, **kwargs)
        taken.append(kwargs["parcel"].parcel_id)

    monkeypatch.setattr(deposit_batch.DepositBatch, "add", spy)
    return taken


def test_a_batch_of_many_writes_what_batches_of_one_write(
    three_databases: tuple[Engine, Engine, Engine], monkeypatch: pytest.MonkeyPatch
) -> None:
    batched, one_by_one, per_cabinet = three_databases
    events = scenario()
    taken = count_batched(monkeypatch)

    published: dict[str, list[tuple[str, str]]] = {}

    def publisher(side: str) -> Callable[[str, bytes], bool]:
        def publish(topic: str, payload: bytes) -> bool:
            if topic.endswith("/cmd"):
                command = decode_command(payload)
                item = (command.type, command.model_dump_json(include={"data"}))
                published.setdefault(side, []).append(item)
            return True

        return publish

    received = [Received(event_topic(e.cab), encode(e), NOW) for e in events]
    ingest = IngestLoop(
        engine=batched, publish=publisher("batched"), seal_key=SEAL_KEY, clock=lambda: NOW
    )
    ingest.randbelow = Draws()
    assert ingest.handle(received) == {"CAB-1": 5, "CAB-2": 3, "CAB-3": 2}
    assert ingest.stats.fallback_batches == 0
    # The batch took the new parcels' deposits without a read; the rest read the database first.
    assert sorted(taken) == ["P-B", "P-C", "P-D", "P-E", "P000001"]
    assert ingest.stats.batched == 5

    # The same deliveries, a batch of one each: the same codes, drawn in the same order.
    single = IngestLoop(
        engine=one_by_one, publish=publisher("one_by_one"), seal_key=SEAL_KEY, clock=lambda: NOW
    )
    single.randbelow = Draws()
    for delivery in received:
        single.handle([delivery])
    assert single.stats.fallback_batches == 0
    assert single.stats.batched == 5

    draws = Draws()  # the same codes in the same order: cabinets in id order, events in seq
    with Session(per_cabinet) as session:
        for cab in CABS:
            mine = [e for e in events if e.cab == cab]
            store_events(session=session, cab=cab, envelopes=mine, now=NOW)
            apply_pending(session=session, cab=cab, now=NOW, seal_key=SEAL_KEY, randbelow=draws)
    # One function built every new parcel's rows, on all three sides (five parcels each).
    assert sorted(taken) == sorted(["P-B", "P-C", "P-D", "P-E", "P000001"] * 3)
    # `apply_pending` publishes nothing: it leaves its commands to the dispatcher; the worker
    # sent its deposits' codes.put itself, and the dispatcher sends what its other events queued.
    for engine, side in (
        (batched, "batched"),
        (one_by_one, "one_by_one"),
        (per_cabinet, "per_cabinet"),
    ):
        CommandDispatcher(engine=engine, publish=publisher(side)).tick(NOW)
    assert sorted(published["batched"]) == sorted(published["per_cabinet"])
    assert len(published["batched"]) >= 5
    assert snapshot(batched) == snapshot(per_cabinet)
    # Batches of one wrote the same rows; they only sent more: each deposit's codes.put went
    # out after its own commit, before the later event that superseded it was applied, where
    # one batch drops a send its own later events superseded (`DepositBatch.drop_superseded`).
    assert snapshot(one_by_one, sends=False) == snapshot(batched, sends=False)
    extra = sorted(published["one_by_one"])
    for item in published["batched"]:
        extra.remove(item)
    with Session(one_by_one) as session:
        superseded = session.exec(
            select(CommandOutbox).where(col(CommandOutbox.superseded_by).is_not(None))
        ).all()
        sent_then_superseded = sorted(
            (c.type, json.dumps({"data": c.data}, separators=(",", ":"))) for c in superseded
        )
    assert extra and sorted(extra) == sent_then_superseded

    # And what that is, in a user's terms.
    with Session(batched) as session:
        cab1 = session.exec(
            select(Parcel).where(Parcel.cabinet_id == "CAB-1").order_by(col(Parcel.parcel_id))
        ).all()
        assert [p.parcel_id for p in cab1] == ["P-B", "P-C", "P-LIVE", "P000001"]
        assert [p.status for p in cab1] == ["in_locker", "in_locker", "in_locker", "picked_up"]
        # The draws that repeated P-LIVE's code (live before the batch) were drawn again.
        assert len({p.code_hash for p in cab1}) == 4
        announced = session.exec(select(Parcel).where(Parcel.tracking_no == ANNOUNCED)).one()
        assert (announced.status, announced.order_no, announced.parcel_id) == (
            "in_locker",
            "ORDER-9",
            "P-ANN",
        )
        refused = session.exec(
            select(InboxEvent.cabinet_id, InboxEvent.seq).where(
                col(InboxEvent.anomaly).is_not(None)
            )
        ).all()
        assert sorted(refused) == [("CAB-2", 1), ("CAB-3", 2)]
        assert session.get(Compartment, ("CAB-1", "A01")).state == "occupied"  # P-C went in last


def test_pending_events_are_read_for_many_cabinets_at_once_and_only_whole(engine: Engine) -> None:
    with Session(engine) as session:
        for cab in CABS:
            register_cabinet(session, cab)
        store_events(session=session, cab="CAB-1", envelopes=[deposited(1, "CAB-1")], now=NOW)
        store_events(
            session=session, cab="CAB-2", envelopes=[deposited(s, "CAB-2") for s in (1, 2, 3)]
        )
        store_events(session=session, cab="CAB-3", envelopes=[deposited(2, "CAB-3")], now=NOW)
        session.get(Cabinet, "CAB-2").applied_upto = 1  # seq 1 applied already
        session.commit()
        cabinets = session.exec(select(Cabinet)).all()

        def seqs(limit: int) -> dict[str, list[int]]:
            found = repo.pending_events(session=session, cabinets=cabinets, limit=limit)
            return {cab: [row.seq for row in rows] for cab, rows in found.items()}

        assert seqs(10) == {"CAB-1": [1], "CAB-2": [2, 3], "CAB-3": [2]}
        # CAB-2 holds the limit: left to read in batches; CAB-3 was not reached, so not known.
        assert seqs(2) == {"CAB-1": [1]}
        # Stopped at the limit inside CAB-2 (3 rows) or CAB-3 (4): that one may hold more.
        assert seqs(3) == {"CAB-1": [1]}
        assert seqs(4) == {"CAB-1": [1], "CAB-2": [2, 3]}
        assert seqs(1) == {}


def test_deposits_share_a_transaction_with_fewer_savepointed_events() -> None:
    from cloud.worker.ingest_loop import _chunks

    deposits = {cab: [deposited(s, cab) for s in range(1, 31)] for cab in ("A", "B", "C", "D")}
    # 120 deposits, none of them in a savepoint of its own: one transaction.
    assert [list(chunk) for chunk in _chunks(deposits, 200, 50)] == [["A", "B", "C", "D"]]
    # 30 pickups each: at most 50 events other than deposits in one transaction.
    pickups = {cab: [picked_up(s, s, cab) for s in range(1, 31)] for cab in ("A", "B", "C")}
    assert [list(chunk) for chunk in _chunks(pickups, 200, 50)] == [["A"], ["B"], ["C"]]
    mixed = {"A": deposits["A"], "B": pickups["B"][:21], "C": pickups["C"]}  # 51 others
    assert [list(chunk) for chunk in _chunks(mixed, 200, 50)] == [["A", "B"], ["C"]]
    # Without the second limit, as before: about `max_events` events each.
    assert [list(chunk) for chunk in _chunks(pickups, 200)] == [["A", "B", "C"]]


def test_the_event_applied_is_the_one_stored_when_a_seq_comes_twice(engine: Engine) -> None:
    """The worker applies the events it just stored as it received them (not decoded again
    from their rows): of two deliveries of one seq, it must apply the one it stored."""
    with Session(engine) as session:
        register_cabinet(session, "CAB-1")
        session.commit()
    from_the_future = deposit("CAB-1", 1, parcel="P-FUTURE").model_copy(
        update={"ts": NOW + timedelta(days=2)}  # refused: beyond MAX_TS_AHEAD (1 day)
    )
    kept = deposit("CAB-1", 1, parcel="P-KEPT")
    ingest = IngestLoop(
        engine=engine, publish=lambda t, p: True, seal_key=SEAL_KEY, clock=lambda: NOW
    )
    received = [Received(event_topic(e.cab), encode(e), NOW) for e in (from_the_future, kept)]
    assert ingest.handle(received) == {"CAB-1": 1}
    with Session(engine) as session:
        assert [p.parcel_id for p in session.exec(select(Parcel))] == ["P-KEPT"]
        stored = session.exec(select(InboxEvent)).one()
        assert (stored.event_id, stored.data["parcel_id"]) == (kept.id, "P-KEPT")


@pytest.mark.postgres
def test_an_event_stored_meanwhile_by_a_writer_without_the_lock_is_applied_once(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker inserts a batch's new events once applied (`DepositBatch.defer`). If a writer
    # that takes no cabinet lock (`store_events`, the fallback of another worker) commits one of
    # them in between, the batch must fail rather than apply its copy too, and the cabinet by
    # cabinet path then applies each event once.
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with Session(engine) as session:
            register_cabinet(session, "CAB-1")
        events = [deposit("CAB-1", seq, parcel=f"P-{seq}") for seq in (1, 2, 3)]
        defer = deposit_batch.DepositBatch.defer

        def defer_after_another_writer(self: deposit_batch.DepositBatch, rows: Any) -> None:
            rows = list(rows)
            if rows:
                with Session(engine) as other:  # its own connection, committed
                    store_events(session=other, cab="CAB-1", envelopes=[events[1]], now=NOW)
            defer(self, rows)

        monkeypatch.setattr(deposit_batch.DepositBatch, "defer", defer_after_another_writer)
        ingest = IngestLoop(
            engine=engine, publish=lambda *_: True, seal_key=SEAL_KEY, clock=lambda: NOW
        )
        received = [Received(event_topic(e.cab), encode(e), NOW) for e in events]
        assert ingest.handle(received) == {"CAB-1": 3}
        assert ingest.stats.fallback_batches == 1
        with Session(engine) as session:
            stored = session.exec(select(InboxEvent).order_by(col(InboxEvent.seq))).all()
            assert [(e.seq, e.applied, e.anomaly) for e in stored] == [
                (1, True, None),
                (2, True, None),
                (3, True, None),
            ]
            parcels = session.exec(select(Parcel.parcel_id).order_by(col(Parcel.parcel_id))).all()
            assert parcels == ["P-1", "P-2", "P-3"]
            puts = session.exec(select(CommandOutbox).where(CommandOutbox.type == "codes.put"))
            assert len(puts.all()) == 3
            assert session.get(Cabinet, "CAB-1").applied_upto == 3
    finally:
        engine.dispose()
