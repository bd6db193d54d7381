"""Store-once and apply-in-order on SQLite and PostgreSQL: duplicates, gaps, deposits, races."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session, SQLModel, col, func

from cloud.db import repo
from cloud.db.models import (
    Alarm,
    Cabinet,
    CommandOutbox,
    Compartment,
    InboxEvent,
    NoticeOutbox,
    Parcel,
    ParcelEvent,
    WebhookOutbox,
)
from cloud.db.sealing import unseal
from cloud.services import ingest
from cloud.services.ingest import HANDLERS, ApplyResult, UnknownCabinet, apply_pending, store_events
from protocol.hashing import code_hash
from protocol.messages import (
    EVENT_TYPES,
    DoorOccupancyMismatch,
    DoorOccupancyMismatchData,
    EventBase,
    PutCodesData,
)
from tests.cloud.db.builders import (
    CAB,
    CODE_KEY,
    PHONE,
    SEAL_KEY,
    T0,
    Recording,
    deposited,
    forced,
    picked_up,
    register_cabinet,
    resend_requested,
)

NOW = T0 + timedelta(minutes=5)


def apply(session: Session, **kwargs: object) -> ApplyResult:
    session.rollback()  # end the test's read snapshot: a service begins its own transaction
    return apply_pending(session=session, cab=CAB, now=NOW, seal_key=SEAL_KEY, **kwargs)


def store(session: Session, events: list[EventBase]) -> int:
    session.rollback()
    return store_events(session=session, cab=CAB, envelopes=events, now=NOW)


def inbox(session: Session) -> list[tuple[int, str, bool]]:
    rows = session.exec(select(InboxEvent).order_by(col(InboxEvent.seq))).scalars()  # type: ignore[call-overload]
    return [(row.seq, row.event_id, row.applied) for row in rows]


def count(session: Session, model: type[SQLModel]) -> int:
    session.rollback()  # a fresh snapshot: other sessions may have committed
    return repo.count_rows(session=session, model=model)


# --- storing --------------------------------------------------------------------------------------


def test_duplicates_and_reorder_are_stored_once_each(session: Session) -> None:
    register_cabinet(session)
    batch = [deposited(3), deposited(1), deposited(3), deposited(2)]
    assert store_events(session=session, cab=CAB, envelopes=batch, now=NOW) == 3
    assert store(session, [deposited(2), deposited(1)]) == 0
    assert store(session, [deposited(4), deposited(3)]) == 1
    assert [(seq, applied) for seq, _, applied in inbox(session)] == [
        (1, False),
        (2, False),
        (3, False),
        (4, False),
    ]


def test_a_conflicting_event_id_keeps_the_stored_one_and_is_logged(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    register_cabinet(session)
    store(session, [deposited(1)])
    with caplog.at_level(logging.ERROR, logger="cloud.services.ingest"):
        stored = store_events(
            session=session, cab=CAB, envelopes=[deposited(1, event_id="other")], now=NOW
        )
    assert stored == 0
    assert inbox(session) == [(1, f"{CAB}-e1", False)]
    assert any("CONFLICT" in r.message and "other" in r.message for r in caplog.records)


def test_events_of_an_unknown_cabinet_are_refused(session: Session) -> None:
    register_cabinet(session)
    with pytest.raises(UnknownCabinet):
        store_events(session=session, cab="NOPE", envelopes=[deposited(1, cab="NOPE")], now=NOW)
    with pytest.raises(ValueError, match="offered as"):
        store(session, [deposited(1, cab="CAB-2")])
    assert inbox(session) == []


# --- applying -------------------------------------------------------------------------------------


def test_apply_stops_at_a_gap_and_continues_when_it_fills(session: Session) -> None:
    register_cabinet(session)
    store(session, [deposited(1), deposited(2), deposited(4)])

    result = apply(session)
    assert (result.applied, result.ack_upto, result.waiting) == (2, 2, 1)
    assert session.get(Cabinet, CAB).applied_upto == 2
    assert [applied for _, _, applied in inbox(session)] == [True, True, False]
    assert apply(session) == ApplyResult(applied=0, ack_upto=2, waiting=1)

    store(session, [deposited(3)])
    result = apply(session)
    assert (result.applied, result.ack_upto, result.waiting) == (2, 4, 0)
    assert [applied for _, _, applied in inbox(session)] == [True] * 4
    assert count(session, ParcelEvent) == 4
    assert apply(session) == ApplyResult(applied=0, ack_upto=4)


def test_the_batch_limit_leaves_the_rest_for_the_next_call(session: Session) -> None:
    register_cabinet(session)
    store(session, [deposited(n) for n in range(1, 6)])
    first = apply(session, limit=2)
    assert (first.applied, first.ack_upto, first.more) == (2, 5, True)
    second = apply(session, limit=10)
    assert (second.applied, second.ack_upto, second.more) == (3, 5, False)


def test_a_deposit_issues_a_code_queues_codes_put_and_a_notice_and_keeps_no_clear_code(
    session: Session,
) -> None:
    register_cabinet(session)
    rng = Recording()
    store(session, [deposited(1)])
    assert apply(session, randbelow=rng).applied == 1
    (code,) = rng.codes

    parcel = session.exec(select(Parcel)).scalars().one()  # type: ignore[call-overload]
    assert (parcel.id, parcel.parcel_id, parcel.status) == ("P000001", "P000001", "in_locker")
    assert parcel.code_hash == code_hash(CODE_KEY, code)
    assert parcel.clock_started_at == NOW and parcel.deposited_at == T0 + timedelta(seconds=1)

    (command,) = session.exec(select(CommandOutbox)).scalars().all()  # type: ignore[call-overload]
    assert (command.cabinet_id, command.type, command.sent_at) == (CAB, "codes.put", None)
    (entry,) = PutCodesData.model_validate_json(json.dumps(command.data)).entries
    assert (entry.parcel_id, entry.compartment) == ("P000001", "A01")
    assert entry.code_hash == parcel.code_hash
    assert entry.expires_at == NOW + timedelta(hours=72 + 1)  # the deadline and slack

    (notice,) = session.exec(select(NoticeOutbox)).scalars().all()  # type: ignore[call-overload]
    assert (notice.kind, notice.to_phone, notice.status) == ("deposited", PHONE, "queued")
    assert notice.next_attempt_at == NOW  # a deposit notice goes out at once, even at night
    assert unseal(SEAL_KEY, notice.code_sealed, context=notice.dedupe_key) == code

    # Not announced by an ERP: no owner key, so no endpoint to tell, so no webhook row.
    assert count(session, WebhookOutbox) == 0
    assert session.get(Compartment, (CAB, "A01")).state == "occupied"
    assert_nowhere_in_database(session, code)


def assert_nowhere_in_database(session: Session, secret: str) -> None:
    """Scan every column of every row of every table, as text, for `secret`."""
    session.rollback()
    scanned = 0
    for table in SQLModel.metadata.sorted_tables:
        for row in session.connection().execute(select(table)).mappings():
            for name, value in row.items():
                if value is None:
                    continue
                text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                scanned += 1
                assert secret not in text, f"the clear code is in {table.name}.{name}"
    assert scanned > 100  # the parcel, its outboxes and timeline were all there to scan


def test_pickup_revokes_the_code_and_frees_the_door(session: Session) -> None:
    register_cabinet(session)
    store(session, [deposited(1), picked_up(2, 1)])
    assert apply(session).applied == 2
    parcel = repo.get_parcel_by_parcel_id(session=session, parcel_id="P000001")
    assert parcel.status == "picked_up"
    commands = session.exec(select(CommandOutbox.type).order_by(CommandOutbox.created_at)).all()
    assert sorted(t for (t,) in commands) == ["codes.put", "codes.revoke"]
    statuses = session.exec(select(ParcelEvent.status).order_by(ParcelEvent.id)).all()
    assert [s for (s,) in statuses] == ["in_locker", "picked_up"]
    assert session.get(Compartment, (CAB, "A01")).state == "free"


def test_refused_events_are_anomalies_but_still_applied(session: Session) -> None:
    register_cabinet(session)
    events = [deposited(1), deposited(2, event_id="dup"), picked_up(3, 99), forced(4)]
    events[1] = events[1].model_copy(update={"data": deposited(1).data})  # same parcel again
    store_events(session=session, cab=CAB, envelopes=events, now=NOW)
    result = apply(session)
    assert (result.applied, result.anomalies, result.ack_upto) == (4, 2, 4)
    anomalies = dict(
        session.exec(select(InboxEvent.seq, InboxEvent.anomaly).order_by(InboxEvent.seq)).all()
    )
    assert anomalies[1] is None and anomalies[4] is None
    assert "IllegalTransition" in anomalies[2]
    assert "does not know" in anomalies[3]
    # The refused deposit left nothing behind: one parcel, one timeline row, one code.
    assert count(session, Parcel) == 1
    assert count(session, ParcelEvent) == 1
    assert count(session, NoticeOutbox) == 1
    assert count(session, Alarm) == 1
    assert session.get(Cabinet, CAB).applied_upto == 4


def test_a_resend_issues_a_new_code_within_the_sites_limit(session: Session) -> None:
    register_cabinet(session)
    rng = Recording()
    store(session, [deposited(1), *(resend_requested(seq) for seq in range(2, 6))])
    result = apply(session, randbelow=rng)
    assert (result.applied, result.anomalies) == (5, 0)
    assert len(rng.codes) == 4  # the deposit's code and three resends: the fourth is limited
    parcel = repo.get_parcel_by_parcel_id(session=session, parcel_id="P000001")
    assert parcel.code_generation == 4
    assert parcel.code_hash == code_hash(CODE_KEY, rng.codes[-1])
    kinds = session.exec(select(NoticeOutbox.kind).order_by(NoticeOutbox.id)).all()
    assert [k for (k,) in kinds] == ["deposited", "resend", "resend", "resend"]
    assert count(session, CommandOutbox) == 4  # one codes.put per code
    for code in rng.codes:
        assert_nowhere_in_database(session, code)


def test_a_failure_mid_batch_applies_nothing_and_the_next_call_applies_all(
    session: Session,
) -> None:
    register_cabinet(session)
    store(session, [deposited(n) for n in range(1, 5)])
    draws = iter([1, 2, RuntimeError("killed"), 3, 4, 5, 6])

    def failing(n: int) -> int:
        value = next(draws)
        if isinstance(value, BaseException):
            raise value
        return value

    with pytest.raises(RuntimeError, match="killed"):
        apply(session, randbelow=failing)
    assert session.get(Cabinet, CAB).applied_upto == 0
    assert count(session, Parcel) == count(session, ParcelEvent) == 0
    assert count(session, CommandOutbox) == count(session, NoticeOutbox) == 0

    result = apply(session, randbelow=failing)
    assert (result.applied, result.ack_upto) == (4, 4)
    assert count(session, ParcelEvent) == 4


# --- concurrency ----------------------------------------------------------------------------------


def test_concurrent_appliers_apply_each_event_exactly_once(engine: Engine) -> None:
    events = 120
    with Session(engine) as session:
        register_cabinet(session, compartments=1)
        store_events(
            session=session, cab=CAB, envelopes=[deposited(n) for n in range(1, events + 1)]
        )
    barrier = threading.Barrier(2)
    applied: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with Session(engine) as session:
                barrier.wait()
                while True:
                    result = apply(session, limit=7)
                    applied.append(result.applied)
                    if result.ack_upto == events and not result.more and not result.applied:
                        return
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sum(applied) == events
    with Session(engine) as session:
        per_seq = session.exec(
            select(ParcelEvent.seq, func.count()).group_by(ParcelEvent.seq)
        ).all()
        assert sorted(per_seq) == [(seq, 1) for seq in range(1, events + 1)]
        assert count(session, CommandOutbox) == events
        assert count(session, NoticeOutbox) == events
        assert session.get(Cabinet, CAB).applied_upto == events


def test_every_event_type_of_the_protocol_has_its_handler_in_one_table() -> None:
    """A search for an event type finds what applies it (`cloud.services.ingest.HANDLERS`)."""
    assert set(HANDLERS) == set(EVENT_TYPES.values())
    source = Path(ingest.__file__).read_text()
    for name in EVENT_TYPES:
        assert f'"{name}"' in source, name


def test_the_handler_table_in_the_docs_is_the_code_s() -> None:
    """docs/ingest.md names each event type's class and handler as `HANDLERS` does."""
    page = Path(__file__).parents[3] / "docs" / "ingest.md"
    text = page.read_text().split("## Handlers", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip().strip("`").split("`")[0] for cell in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| `")
    ]
    documented = {(t, cls, handler) for t, cls, handler in rows}
    assert documented == {
        (model.model_fields["type"].default, model.__name__, handler.__name__)
        for model, handler in HANDLERS.items()
    }


def test_an_occupancy_mismatch_is_an_alarm_saying_what_disagrees(session: Session) -> None:
    register_cabinet(session)
    mismatch = DoorOccupancyMismatch(
        id=f"{CAB}-e1",
        cab=CAB,
        seq=1,
        ts=NOW,
        data=DoorOccupancyMismatchData(compartment="K03", expected="empty", sensed="occupied"),
    )
    store_events(session=session, cab=CAB, envelopes=[mismatch], now=NOW)
    result = apply(session)
    assert (result.applied, result.anomalies) == (1, 0)
    alarm = session.exec(select(Alarm)).scalar_one()
    assert (alarm.kind, alarm.compartment) == ("door.occupancy_mismatch", "K03")
    assert alarm.detail == "expected empty, sensor reads occupied"
