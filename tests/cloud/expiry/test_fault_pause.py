"""A faulted door stops its parcel's deadline clock; the repair restarts it and tells the recipient.

The clock is injected: each step is applied at a chosen `now` on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from cloud.core.parcels import CODE_EXPIRY_SLACK_S
from cloud.db.models import CommandOutbox, Compartment, NoticeOutbox, Parcel
from cloud.services.expiry import run_due
from cloud.services.ingest import apply_pending, store_events
from cloud.worker.presence import apply_state
from protocol.messages import (
    CompartmentInfo,
    CompartmentServiceChanged,
    CompartmentServiceData,
    CompartmentState,
    EventBase,
    LockFault,
    LockFaultData,
    Size,
    State,
)
from tests.cloud.db.builders import CAB, SEAL_KEY, T0, deposited, register_cabinet
from tests.cloud.worker.harness import birth, will

HOUR = timedelta(hours=1)
WINDOW = 72 * HOUR  # the site's default pickup window


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """Cabinet CAB-1 online, parcel P000001 deposited in A01 at T0."""
    with Session(engine) as session:
        register_cabinet(session)
        apply_state(session=session, state=birth(CAB, 1), received_at=T0 - HOUR, seal_key=SEAL_KEY)
    ingest(engine, deposited(1), at=T0)
    return engine


def ingest(engine: Engine, event: EventBase, *, at) -> None:
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[event], now=at)
        result = apply_pending(session=session, cab=CAB, now=at, seal_key=SEAL_KEY)
    assert result.anomalies == 0


def lock_fault(seq: int, compartment: str = "A01") -> EventBase:
    return LockFault(
        id=f"{CAB}-e{seq}",
        cab=CAB,
        seq=seq,
        ts=T0,
        data=LockFaultData(compartment=compartment, detail="no release after 3 tries"),
    )


def service(seq: int, *, in_service: bool, compartment: str = "A01") -> EventBase:
    return CompartmentServiceChanged(
        id=f"{CAB}-e{seq}",
        cab=CAB,
        seq=seq,
        ts=T0,
        data=CompartmentServiceData(compartment=compartment, in_service=in_service),
    )


def parcel(engine: Engine) -> Parcel:
    with Session(engine) as session:
        return session.exec(select(Parcel)).one()


def expire(engine: Engine, at) -> int:
    with Session(engine) as session:
        return run_due(session=session, now=at, seal_key=SEAL_KEY).expired


def new_deadline_notices(engine: Engine) -> list[NoticeOutbox]:
    with Session(engine) as session:
        return list(session.exec(select(NoticeOutbox).where(NoticeOutbox.kind == "new_deadline")))


def latest_put_expiry(engine: Engine):
    with Session(engine) as session:
        puts = session.exec(
            select(CommandOutbox)
            .where(CommandOutbox.type == "codes.put")
            .order_by(col(CommandOutbox.created_at), col(CommandOutbox.id))
        ).all()
    return puts[-1].data["entries"][0]["expires_at"], len(puts)


def test_a_lock_fault_pauses_the_clock_and_the_repair_tells_the_new_deadline(
    engine: Engine,
) -> None:
    ingest(engine, lock_fault(2), at=T0 + HOUR)
    assert parcel(engine).pauses[0]["reason"] == "compartment_faulted"
    with Session(engine) as session:
        assert session.get(Compartment, (CAB, "A01")).state == "faulted"

    # Well past the original deadline, the parcel does not expire: nobody could open the door.
    assert expire(engine, T0 + WINDOW + 2 * HOUR) == 0
    assert parcel(engine).status == "in_locker"

    ingest(engine, service(3, in_service=True), at=T0 + 6 * HOUR)  # a technician repaired it
    row = parcel(engine)
    assert row.pauses[0]["ended_at"] is not None
    expected = T0 + WINDOW + 5 * HOUR
    (notice,) = new_deadline_notices(engine)
    assert (notice.deadline, notice.to_phone) == (expected, row.phone)
    # The cabinet learns the later expiry of the unchanged code.
    expires_at, puts = latest_put_expiry(engine)
    slack = timedelta(seconds=CODE_EXPIRY_SLACK_S)
    assert (expires_at, puts) == ((expected + slack).isoformat().replace("+00:00", "Z"), 2)
    with Session(engine) as session:
        assert session.get(Compartment, (CAB, "A01")).state == "occupied"

    assert expire(engine, expected - timedelta(seconds=1)) == 0
    assert expire(engine, expected) == 1


def test_taken_out_of_service_pauses_and_a_second_fault_changes_nothing(engine: Engine) -> None:
    ingest(engine, service(2, in_service=False), at=T0 + HOUR)
    ingest(engine, lock_fault(3), at=T0 + 2 * HOUR)
    assert len(parcel(engine).pauses) == 1
    ingest(engine, service(4, in_service=True), at=T0 + 3 * HOUR)
    assert parcel(engine).pauses[0]["ended_at"] is not None
    assert [n.deadline for n in new_deadline_notices(engine)] == [T0 + WINDOW + 2 * HOUR]


def test_a_fault_on_another_door_leaves_the_clock_running(engine: Engine) -> None:
    ingest(engine, lock_fault(2, compartment="A02"), at=T0 + HOUR)
    assert parcel(engine).pauses == []
    assert expire(engine, T0 + WINDOW) == 1


def test_a_birth_showing_the_door_repaired_resumes_the_clock_once(engine: Engine) -> None:
    ingest(engine, lock_fault(2), at=T0 + HOUR)
    with Session(engine) as session:
        apply_state(
            session=session, state=will(CAB, 1), received_at=T0 + 2 * HOUR, seal_key=SEAL_KEY
        )
        # Repaired while offline: the birth lists A01 occupied again; its event follows.
        repaired = State(
            cab=CAB,
            online=True,
            boot=2,
            firmware="1.0.0",
            ts=T0,
            compartments=[CompartmentInfo(id="A01", size=Size.M, state=CompartmentState.OCCUPIED)],
        )
        result = apply_state(
            session=session, state=repaired, received_at=T0 + 4 * HOUR, seal_key=SEAL_KEY
        )
    assert result.deadlines_changed == 2  # the door's pause and the outage's, both ended
    row = parcel(engine)
    assert all(p["ended_at"] is not None for p in row.pauses)
    assert [n.deadline for n in new_deadline_notices(engine)] == [T0 + WINDOW + 3 * HOUR]

    ingest(engine, service(3, in_service=True), at=T0 + 5 * HOUR)
    assert len(new_deadline_notices(engine)) == 1  # nothing more to resume


def test_a_birth_listing_the_door_faulted_pauses_the_clock(engine: Engine) -> None:
    faulted = State(
        cab=CAB,
        online=True,
        boot=2,
        firmware="1.0.0",
        ts=T0,
        compartments=[CompartmentInfo(id="A01", size=Size.M, state=CompartmentState.FAULTED)],
    )
    with Session(engine) as session:
        apply_state(session=session, state=faulted, received_at=T0 + HOUR, seal_key=SEAL_KEY)
    assert [p["reason"] for p in parcel(engine).pauses] == ["compartment_faulted"]
    assert expire(engine, T0 + WINDOW + HOUR) == 0
