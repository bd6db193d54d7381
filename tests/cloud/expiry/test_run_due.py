"""The expiry scheduler's transactions: reminders, expiry, paused deadlines, returns, races."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from cloud.core.errors import IllegalTransition
from cloud.db.models import CommandOutbox, NoticeOutbox, Parcel, ParcelEvent
from cloud.services.expiry import UnknownParcel, confirm_return, run_due
from cloud.services.ingest import apply_pending, store_events
from cloud.worker.presence import apply_state
from protocol.messages import ParcelRetrieved, ParcelRetrievedData, RetrievalReason
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, register_cabinet
from tests.cloud.worker.harness import birth, will

PARCEL = "P000001"
HOUR = timedelta(hours=1)


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """The migrated database with cabinet CAB-1 online and one parcel deposited at T0."""
    with Session(engine) as session:
        register_cabinet(session)
        apply_state(session=session, state=birth(CAB, 1), received_at=T0 - HOUR, seal_key=SEAL_KEY)
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=T0)
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
    return engine


def due(engine: Engine, at: timedelta):
    with Session(engine) as session:
        return run_due(session=session, now=T0 + at, seal_key=SEAL_KEY)


def count(engine: Engine, model: type, *where: object) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model).where(*where)).one()


def status(engine: Engine) -> str:
    with Session(engine) as session:
        return session.exec(select(Parcel.status).where(Parcel.parcel_id == PARCEL)).one()


def notices(engine: Engine, kind: str) -> int:
    return count(engine, NoticeOutbox, NoticeOutbox.kind == kind)


def commands(engine: Engine, type_: str) -> int:
    return count(engine, CommandOutbox, CommandOutbox.type == type_)


def test_reminder_once_at_window_minus_reminder_time(engine: Engine) -> None:
    assert due(engine, 47 * HOUR).reminded == 0
    assert notices(engine, "reminder") == 0

    first = due(engine, 48 * HOUR)
    second = due(engine, 48 * HOUR + timedelta(minutes=1))

    assert (first.reminded, second.reminded) == (1, 0)
    assert notices(engine, "reminder") == 1
    assert second.next_due_at == T0 + 72 * HOUR  # the expiry is what is left
    assert status(engine) == "in_locker"


def test_expiry_revokes_asks_for_retrieval_and_tells_both(engine: Engine) -> None:
    assert due(engine, 72 * HOUR - timedelta(seconds=1)).expired == 0

    counts = due(engine, 72 * HOUR)

    assert counts.expired == 1
    assert status(engine) == "expired"
    assert count(engine, ParcelEvent, ParcelEvent.status == "expired") == 1
    assert (commands(engine, "codes.revoke"), commands(engine, "retrievals.put")) == (1, 1)
    assert (notices(engine, "expired"), notices(engine, "expired_courier")) == (1, 1)
    assert due(engine, 80 * HOUR).expired == 0  # applied once, whatever the later runs


def test_offline_cabinet_pushes_the_deadline_back(engine: Engine) -> None:
    with Session(engine) as session:
        apply_state(
            session=session, state=will(CAB, 1), received_at=T0 + 10 * HOUR, seal_key=SEAL_KEY
        )
        assert due(engine, 72 * HOUR).expired == 0  # the clock is stopped: nothing due at all
        apply_state(
            session=session, state=birth(CAB, 2), received_at=T0 + 15 * HOUR, seal_key=SEAL_KEY
        )

    assert due(engine, 77 * HOUR - timedelta(seconds=1)).expired == 0
    assert due(engine, 77 * HOUR).expired == 1
    assert notices(engine, "new_deadline") == 1  # the recipient was told the new deadline


def test_two_concurrent_runs_apply_each_expiry_once(engine: Engine) -> None:
    barrier = threading.Barrier(2)
    results = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with Session(engine) as session:
                barrier.wait(timeout=10)
                results.append(run_due(session=session, now=T0 + 72 * HOUR, seal_key=SEAL_KEY))
        except BaseException as err:  # reported in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not errors
    assert sum(r.expired for r in results) == 1
    assert count(engine, ParcelEvent, ParcelEvent.status == "expired") == 1
    assert commands(engine, "codes.revoke") == 1
    assert notices(engine, "expired") == 1


def test_retrieved_then_return_confirmed_closes_it(engine: Engine) -> None:
    due(engine, 72 * HOUR)
    retrieved = ParcelRetrieved(
        id=f"{CAB}-e2",
        cab=CAB,
        seq=2,
        ts=T0 + 73 * HOUR,
        data=ParcelRetrievedData(
            compartment="A01",
            parcel_id=PARCEL,
            courier_id="courier-7",
            reason=RetrievalReason.EXPIRED,
        ),
    )
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[retrieved], now=T0 + 73 * HOUR)
        apply_pending(session=session, cab=CAB, now=T0 + 73 * HOUR, seal_key=SEAL_KEY)
    assert status(engine) == "retrieved"

    with Session(engine) as session:
        closed = confirm_return(
            session=session, parcel_id=PARCEL, now=T0 + 80 * HOUR, seal_key=SEAL_KEY
        )

    assert (closed, status(engine)) == ("returned", "returned")
    assert count(engine, ParcelEvent, ParcelEvent.status == "returned") == 1


def test_return_of_a_parcel_still_in_the_locker_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(IllegalTransition):
            confirm_return(session=session, parcel_id=PARCEL, now=T0 + HOUR, seal_key=SEAL_KEY)
        with pytest.raises(UnknownParcel):
            confirm_return(session=session, parcel_id="nope", now=T0 + HOUR, seal_key=SEAL_KEY)
    assert status(engine) == "in_locker"


def test_a_limit_leaves_the_rest_for_the_next_call(engine: Engine) -> None:
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(2)], now=T0)
        apply_pending(session=session, cab=CAB, now=T0, seal_key=SEAL_KEY)
        first = run_due(session=session, now=T0 + 72 * HOUR, seal_key=SEAL_KEY, limit=1)
        second = run_due(session=session, now=T0 + 72 * HOUR, seal_key=SEAL_KEY, limit=1)

    assert (first.expired, first.more) == (1, True)
    assert (second.expired, second.more) == (1, False)
    assert count(engine, Parcel, Parcel.status == "expired") == 2
