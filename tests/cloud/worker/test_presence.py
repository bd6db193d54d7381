"""Presence from the retained state topic: boot ordering, birth inventory, paused deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from cloud.core.notices import NoticeKind
from cloud.db.models import Cabinet, CommandOutbox, Compartment, NoticeOutbox, Parcel
from cloud.db.repo import parcel_to_core
from cloud.services.ingest import apply_pending, store_events
from cloud.worker import MqttClient, Worker, apply_state, subscriptions
from cloud.worker.mqtt import Received
from protocol.codec import encode
from protocol.topics import state_topic
from tests.cloud.db.builders import CAB, SEAL_KEY, deposited
from tests.cloud.worker.harness import (
    WAIT_S,
    ScriptedCabinet,
    birth,
    make_worker,
    start_workers,
    will,
)
from tests.services import Mosquitto, wait_for

T1 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def _apply(engine: Engine, state, at: datetime = T1):
    with Session(engine) as session:
        return apply_state(session=session, state=state, received_at=at, seal_key=SEAL_KEY)


def _cabinet(engine: Engine) -> Cabinet:
    with Session(engine) as session:
        return session.get(Cabinet, CAB)


def test_a_late_will_of_an_older_boot_never_hides_a_newer_birth(engine: Engine) -> None:
    assert _apply(engine, birth(CAB, 2)).applied
    late = _apply(engine, will(CAB, 1), T1 + timedelta(seconds=5))
    assert not late.applied
    cabinet = _cabinet(engine)
    assert (cabinet.online, cabinet.boot, cabinet.last_seen_at) == (True, 2, T1)

    assert _apply(engine, will(CAB, 2), T1 + timedelta(seconds=9)).applied
    cabinet = _cabinet(engine)
    assert (cabinet.online, cabinet.boot, cabinet.last_seen_at) == (
        False,
        2,
        T1 + timedelta(seconds=9),
    )
    assert not _apply(engine, birth(CAB, 2)).applied  # within a boot the Will wins
    assert _apply(engine, birth(CAB, 3)).online is True


def test_a_birth_reconciles_the_compartments_with_its_inventory(engine: Engine) -> None:
    state = birth(CAB, 1, ["A01", "A02", "B01"])
    result = _apply(engine, state)
    assert (result.compartments_added, result.compartments_removed) == (1, 2)
    with Session(engine) as session:
        rows = session.exec(select(Compartment).where(Compartment.cabinet_id == CAB)).all()
        assert sorted(r.id for r in rows) == ["A01", "A02", "B01"]
    assert _cabinet(engine).firmware == "1.0.0"


def test_a_repeated_birth_does_not_undo_the_doors_events_changed_since(engine: Engine) -> None:
    # Found by `locker chaos`: the broker hands the retained birth again to every worker that
    # (re)subscribes. Reconciled again, that older picture put back a parcel picked up since.
    first = birth(CAB, 1)
    _apply(engine, first)
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=T1)
        apply_pending(session=session, cab=CAB, now=T1, seal_key=SEAL_KEY)

    again = _apply(engine, first, T1 + timedelta(seconds=30))
    assert again.applied and not again.reconnected
    with Session(engine) as session:
        door = session.get(Compartment, (CAB, "A01"))
        assert door is not None and door.state == "occupied"

    # A new session's birth is the cabinet's word on its doors now.
    assert _apply(engine, birth(CAB, 2), T1 + timedelta(seconds=60)).reconnected
    with Session(engine) as session:
        assert session.get(Compartment, (CAB, "A01")).state == "free"


def _outbox(engine: Engine) -> tuple[list[CommandOutbox], list[NoticeOutbox]]:
    with Session(engine) as session:
        puts = session.exec(select(CommandOutbox).where(CommandOutbox.type == "codes.put")).all()
        notices = session.exec(
            select(NoticeOutbox).where(NoticeOutbox.kind == NoticeKind.NEW_DEADLINE.value)
        ).all()
        return list(puts), list(notices)


def _two_parcels_in_an_online_cabinet(engine: Engine) -> None:
    _apply(engine, birth(CAB, 1))
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(1), deposited(2)], now=T1)
        apply_pending(session=session, cab=CAB, now=T1, seal_key=SEAL_KEY)
    assert len(_outbox(engine)[0]) == 2  # the deposits' codes.put


def test_a_five_second_outage_moves_the_deadlines_without_resending_any_code(
    engine: Engine,
) -> None:
    """A broker restart: every cabinet drops for seconds; no code and no notice goes out again."""
    _two_parcels_in_an_online_cabinet(engine)
    offline = _apply(engine, will(CAB, 1), T1 + timedelta(hours=1))
    assert offline.deadlines_changed == 2
    with Session(engine) as session:
        assert all(p.pauses[0]["ended_at"] is None for p in session.exec(select(Parcel)))

    back = _apply(engine, birth(CAB, 2), T1 + timedelta(hours=1, seconds=5))
    assert back.deadlines_changed == 2 and back.reconnected
    puts, notices = _outbox(engine)
    assert (len(puts), notices) == (2, [])
    with Session(engine) as session:
        for row in session.exec(select(Parcel)):
            parcel = parcel_to_core(row)
            deadline = parcel.deadline(T1 + timedelta(hours=2))
            # The clock stood for the 5 s, and the cabinet's copy still runs past the deadline.
            assert deadline == T1 + timedelta(hours=72, seconds=5)
            assert row.code_expires_at == T1 + timedelta(hours=73) >= deadline


def test_a_three_hour_outage_resends_each_code_once_and_tells_the_new_deadline(
    engine: Engine,
) -> None:
    _two_parcels_in_an_online_cabinet(engine)
    _apply(engine, will(CAB, 1), T1 + timedelta(hours=1))
    back = _apply(engine, birth(CAB, 2), T1 + timedelta(hours=4))
    assert back.deadlines_changed == 2
    puts, notices = _outbox(engine)
    at_deposit, resent = (
        (T1 + timedelta(hours=h)).isoformat().replace("+00:00", "Z") for h in (72 + 1, 72 + 3 + 1)
    )
    entries = sorted((e["parcel_id"], e["expires_at"]) for p in puts for e in p.data["entries"])
    assert entries == [
        ("P000001", at_deposit),
        ("P000001", resent),
        ("P000002", at_deposit),
        ("P000002", resent),
    ]
    assert {n.parcel_row_id for n in notices} == {"P000001", "P000002"}

    # A second blip of the same cabinet, now with fresh slack, resends nothing.
    _apply(engine, will(CAB, 2), T1 + timedelta(hours=5))
    _apply(engine, birth(CAB, 3), T1 + timedelta(hours=5, seconds=5))
    assert tuple(map(len, _outbox(engine))) == (4, 2)


def test_presence_over_mqtt(engine: Engine, mosquitto: Mosquitto) -> None:
    worker = make_worker(engine, mosquitto, "w1")
    start_workers(worker)
    cabinet = ScriptedCabinet(mosquitto)
    try:
        cabinet.birth(2)
        wait_for(lambda: _cabinet(engine).online is True, WAIT_S, "the cabinet online")
        cabinet.publish_state(will(CAB, 1))
        # One worker handles deliveries in order: once seq 1 is acked, the late Will was seen.
        cabinet.publish_events([deposited(1)])
        cabinet.wait_acked(1)
        assert _cabinet(engine).online is True
        cabinet.publish_state(will(CAB, 2))
        wait_for(lambda: _cabinet(engine).online is False, WAIT_S, "the cabinet offline")
    finally:
        worker.stop()
        cabinet.close()


def test_last_seen_moves_with_every_event_and_presence_says_since_when(engine: Engine) -> None:
    """Issue 14: `last_seen_at` stayed at the birth while the cabinet was online. Now every
    applied batch of events moves it to their receipt, and `presence_since` is when `online`
    last changed (a repeated birth does not move it)."""
    _apply(engine, birth(CAB, 1))
    _apply(engine, birth(CAB, 1), T1 + timedelta(minutes=1))  # every worker gets the birth
    assert (_cabinet(engine).presence_since, _cabinet(engine).last_seen_at) == (
        T1,
        T1 + timedelta(minutes=1),
    )
    later = T1 + timedelta(hours=2)
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=later)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=later, seal_key=SEAL_KEY)
    cabinet = _cabinet(engine)
    assert (cabinet.last_seen_at, cabinet.presence_since, cabinet.online) == (later, T1, True)
    _apply(engine, will(CAB, 1), later + timedelta(seconds=30))
    cabinet = _cabinet(engine)
    assert cabinet.presence_since == later + timedelta(seconds=30) and cabinet.online is False


def test_a_birth_the_database_refused_is_stored_once_it_is_back(engine: Engine) -> None:
    """Found by `locker chaos`: a birth that arrived while PostgreSQL refused connections was
    logged and dropped, waiting for the retained state to come again on the next subscribe, which
    a database outage does not cause. The cloud kept the cabinet offline, its parcels' deadline
    clocks paused, and a parcel never expired. Now the worker tries it again every tick."""
    assert _apply(engine, birth(CAB, 1)).applied
    assert _apply(engine, will(CAB, 1), T1 + timedelta(seconds=5)).applied
    client = MqttClient(
        host="127.0.0.1", port=1, client_id="w1", subscriptions=subscriptions(shared=True)
    )
    worker = Worker(engine=engine, client=client, seal_key=SEAL_KEY)
    refusing = True
    store = worker.presence.handle

    def handle(state, received_at):  # the database, refusing connections while `refusing`
        if refusing:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))
        return store(state, received_at)

    worker.presence.handle = handle
    back_at = T1 + timedelta(seconds=20)
    worker.handle([Received(state_topic(CAB), encode(birth(CAB, 2)), back_at)])
    worker._dispatch()  # the worker's timer: the database still refuses
    assert _cabinet(engine).online is False
    refusing = False
    worker._dispatch()
    cabinet = _cabinet(engine)
    assert (cabinet.online, cabinet.boot, cabinet.last_seen_at) == (True, 2, back_at)
