"""Door health from a cabinet's birth: store each door's latest counters, and warn of a door
whose open time drifts up (`cloud.core.health`) with a `door.slow_open` alarm.

Called by the presence worker in the transaction that applies the birth. The alarm is a warning:
it stays open (a repeat only counts) until someone resolves it after servicing the lock.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from cloud.core import health as core
from cloud.core.alarms import AlarmKind
from cloud.db import health as db
from cloud.db.models import Cabinet
from cloud.services.alarms import raise_alarm
from protocol.messages import CabinetHealthData


def record_health(
    *, session: Session, cabinet: Cabinet, health: CabinetHealthData, at: datetime, now: datetime
) -> list[str]:
    """Store the doors' counters; raise `door.slow_open` for each drifting door; return those."""
    boards = {board.board: board for board in health.boards}
    rows = []
    for door in health.doors:
        board = boards.get(door.board or "")
        rows.append(
            {
                "compartment": door.compartment,
                "board": door.board,
                "pulses": door.pulses,
                "failed_unlocks": door.failed_unlocks,
                "flaps": door.flaps,
                "opens_timed": door.opens_timed,
                "open_ms_recent": door.open_ms_recent,
                "open_ms_long": door.open_ms_long,
                "board_requests": board.requests if board else 0,
                "bus_errors": board.errors if board else 0,
            }
        )
    db.put_door_health(session=session, cabinet_id=cabinet.id, doors=rows, at=at)
    drifting = []
    for door in health.doors:
        if not core.open_time_drifting(
            recent_ms=door.open_ms_recent,
            long_ms=door.open_ms_long,
            opens_timed=door.opens_timed,
        ):
            continue
        assert door.open_ms_recent is not None and door.open_ms_long is not None
        raise_alarm(
            session=session,
            cabinet=cabinet,
            kind=AlarmKind.SLOW_OPEN,
            compartment=door.compartment,
            detail=core.drift_detail(door.open_ms_recent, door.open_ms_long),
            at=at,
            now=now,
        )
        drifting.append(door.compartment)
    return drifting
