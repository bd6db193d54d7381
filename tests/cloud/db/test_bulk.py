"""`cloud.db.bulk`: set-based writes store what row-by-row SQL would, on both databases.

PostgreSQL takes the rows as one JSON document (`json_to_recordset`), SQLite as executemanys;
each test runs on both and reads the rows back through the ORM.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select

from cloud.db import bulk, repo
from cloud.db.models import CabinetCreate, CommandOutbox, InboxEvent, SiteCreate
from tests.cloud.db.builders import SEAL_KEY

T0 = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def cab(session: Session) -> str:
    repo.create_site(session=session, site_create=SiteCreate(id="s1", name="Site"), now=T0)
    repo.create_cabinet(
        session=session,
        cabinet_create=CabinetCreate(id="c1", site_id="s1", name="C"),
        code_key=bytes(32),
        seal_key=SEAL_KEY,
        now=T0,
    )
    session.commit()
    return "c1"


def _event(seq: int, **extra) -> dict:
    return {
        "cabinet_id": "c1",
        "seq": seq,
        "event_id": f"e{seq}",
        "type": "parcel.deposited",
        "ts": T0 + timedelta(seconds=seq),
        "data": {"parcel_id": f"p{seq}", "nested": {"list": [1, 2.5, None, "中文"]}},
        "received_at": T0,
        "applied": False,
        **extra,
    }


def test_insert_writes_every_column_as_the_orm_reads_it(session: Session, cab: str) -> None:
    bulk.insert(session.connection(), InboxEvent.__table__, [_event(1), _event(2)])
    session.commit()
    rows = session.exec(select(InboxEvent).order_by(InboxEvent.seq)).all()
    assert [row.seq for row in rows] == [1, 2]
    assert rows[1].ts == T0 + timedelta(seconds=2)  # microseconds and zone kept
    assert rows[1].ts.tzinfo is not None
    assert rows[0].data == {"parcel_id": "p1", "nested": {"list": [1, 2.5, None, "中文"]}}
    assert rows[0].applied is False and rows[0].applied_at is None


def test_insert_skips_conflicts_and_returns_only_the_new_rows(session: Session, cab: str) -> None:
    table = InboxEvent.__table__
    bulk.insert(session.connection(), table, [_event(1)])
    new = bulk.insert(
        session.connection(),
        table,
        [_event(1, event_id="other"), _event(2)],
        conflict_columns=["cabinet_id", "seq"],
        returning=["cabinet_id", "seq"],
    )
    session.commit()
    assert new == [("c1", 2)]
    assert session.get(InboxEvent, ("c1", 1)).event_id == "e1"  # the stored one is kept


def test_a_conflict_without_conflict_columns_fails_and_writes_nothing(
    session: Session, cab: str
) -> None:
    bulk.insert(session.connection(), InboxEvent.__table__, [_event(1)])
    session.commit()
    with pytest.raises(IntegrityError):
        bulk.insert(session.connection(), InboxEvent.__table__, [_event(2), _event(1)])
    session.rollback()
    assert session.exec(select(InboxEvent.seq)).all() == [1]


def test_update_rows_sets_each_row_by_its_key(session: Session, cab: str) -> None:
    table = InboxEvent.__table__
    bulk.insert(session.connection(), table, [_event(1), _event(2), _event(3)])
    bulk.update_rows(
        session.connection(),
        table,
        [
            {"cabinet_id": "c1", "seq": 1, "applied": True, "applied_at": T0, "anomaly": None},
            {"cabinet_id": "c1", "seq": 3, "applied": True, "applied_at": T0, "anomaly": "bad"},
        ],
        key=("cabinet_id", "seq"),
    )
    session.commit()
    rows = {row.seq: row for row in session.exec(select(InboxEvent))}
    assert (rows[1].applied, rows[1].applied_at, rows[1].anomaly) == (True, T0, None)
    assert (rows[2].applied, rows[2].applied_at) == (False, None)
    assert (rows[3].applied, rows[3].anomaly) == (True, "bad")


def test_update_rows_only_if_null_returns_what_it_won(session: Session, cab: str) -> None:
    rows = [
        repo.command_values(cab="c1", type="codes.revoke", data=_ids(["p1"]), now=T0)
        for _ in range(3)
    ]
    table = CommandOutbox.__table__
    bulk.insert(session.connection(), table, repo.with_defaults(CommandOutbox, rows))
    first, second, third = (row["id"] for row in rows)
    changes = [{"id": first, "acked_at": T0}, {"id": second, "acked_at": T0}]
    won = bulk.update_rows(
        session.connection(),
        CommandOutbox.__table__,
        changes,
        key=("id",),
        only_if_null=("acked_at",),
        returning=("id",),
    )
    assert sorted(won) == sorted([(first,), (second,)])
    again = bulk.update_rows(
        session.connection(),
        CommandOutbox.__table__,
        [*changes, {"id": third, "acked_at": T0}],
        key=("id",),
        only_if_null=("acked_at",),
        returning=("id",),
    )
    assert again == [(third,)]


def test_a_naive_time_is_refused_before_anything_is_written(session: Session, cab: str) -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        bulk.insert(
            session.connection(), InboxEvent.__table__, [_event(1, ts=datetime(2026, 12, 1))]
        )
    session.rollback()
    assert session.exec(select(InboxEvent)).all() == []


def test_rows_must_hold_the_same_columns(session: Session, cab: str) -> None:
    short = _event(2)
    del short["received_at"]
    with pytest.raises(ValueError, match="same columns"):
        bulk.insert(session.connection(), InboxEvent.__table__, [_event(1), short])


# PostgreSQL only: SQLite does not enforce varchar lengths.
@pytest.mark.parametrize(
    "db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_a_value_too_long_for_its_column_is_refused_on_postgresql(
    session: Session, cab: str
) -> None:
    with pytest.raises(DBAPIError, match="too long"):
        bulk.insert(session.connection(), InboxEvent.__table__, [_event(1, type="x" * 65)])
    session.rollback()


def _ids(parcel_ids: list[str]):
    from protocol.messages import ParcelIdsData

    return ParcelIdsData(parcel_ids=parcel_ids)
