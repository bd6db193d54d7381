"""Door health from a birth: the latest counters per door, and `door.slow_open` for a door whose
open time drifted up, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from cloud.db.health import door_health
from cloud.db.models import Alarm
from cloud.worker import apply_state
from protocol.messages import CabinetHealthData
from tests.cloud.db.builders import CAB, SEAL_KEY
from tests.cloud.worker.harness import birth

T1 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def _birth_with(doors: list[dict[str, Any]], ts: datetime):
    health = CabinetHealthData.model_validate(
        {"doors": doors, "boards": [{"board": "main:1", "requests": 9000, "errors": 17}]}
    )
    return birth(CAB, 1, ["A01", "A02"]).model_copy(update={"health": health, "ts": ts})


def _door(name: str, recent: int | None, long: int | None, opens: int, **more: int) -> dict:
    door = {
        "compartment": name,
        "board": "main:1",
        "pulses": opens + 2,
        "failed_unlocks": 1,
        "flaps": 0,
        "opens_timed": opens,
        **more,
    }
    if recent is not None:
        door |= {"open_ms_recent": recent, "open_ms_long": long}
    return door


def test_a_birth_stores_each_doors_health_and_flags_a_door_slow_to_open(engine: Engine) -> None:
    doors = [_door("A01", 320, 300, 400), _door("A02", 640, 310, 400)]
    with Session(engine) as session:
        apply_state(
            session=session, state=_birth_with(doors, T1), received_at=T1, seal_key=SEAL_KEY
        )
    with Session(engine) as session:
        rows = door_health(session=session, cabinet_id=CAB)
        assert set(rows) == {"A01", "A02"}
        a02 = rows["A02"]
        assert (a02.pulses, a02.failed_unlocks, a02.opens_timed) == (402, 1, 400)
        assert (a02.open_ms_recent, a02.open_ms_long) == (640, 310)
        assert (a02.board, a02.board_requests, a02.bus_errors) == ("main:1", 9000, 17)
        (alarm,) = session.exec(select(Alarm)).all()
        assert (alarm.kind, alarm.compartment, alarm.severity) == (
            "door.slow_open",
            "A02",
            "warning",
        )
        assert alarm.detail == "opens in 640 ms, usually 310 ms"

    # An hour later the cabinet re-publishes its birth: counters replaced, the alarm repeats.
    later = T1 + timedelta(hours=1)
    doors = [_door("A01", 310, 300, 410, flaps=3), _door("A02", 700, 320, 410)]
    with Session(engine) as session:
        result = apply_state(
            session=session, state=_birth_with(doors, later), received_at=later, seal_key=SEAL_KEY
        )
        assert result.applied and not result.reconnected
    with Session(engine) as session:
        rows = door_health(session=session, cabinet_id=CAB)
        assert rows["A01"].flaps == 3 and rows["A01"].reported_at == later
        (alarm,) = session.exec(select(Alarm)).all()
        assert alarm.count == 2


def test_no_alarm_before_enough_opens_were_timed(engine: Engine) -> None:
    doors = [_door("A01", 900, 300, 5), _door("A02", None, None, 0)]
    with Session(engine) as session:
        apply_state(
            session=session, state=_birth_with(doors, T1), received_at=T1, seal_key=SEAL_KEY
        )
    with Session(engine) as session:
        assert session.exec(select(Alarm)).all() == []
        assert door_health(session=session, cabinet_id=CAB)["A02"].open_ms_recent is None
