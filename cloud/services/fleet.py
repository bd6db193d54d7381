"""The fleet's figures for monitoring: one read-only transaction over `cloud.db.figures`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from cloud.db.figures import FleetRows, fleet_rows


def read_fleet(*, engine: Engine, now: datetime) -> FleetRows:
    """Return the fleet's figures at `now` (cabinets, doors, backlogs, outboxes, alarms)."""
    with Session(engine) as session:
        return fleet_rows(session=session, now=now)
