"""The door health's SQL: replace a cabinet's doors' latest counters, read them for the console.

The transaction is the caller's (the presence worker holds the cabinet's row lock, so two
workers applying two births of one cabinet write one after the other).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.db.health_models import DoorHealth


def put_door_health(
    *, session: Session, cabinet_id: str, doors: Iterable[Mapping[str, Any]], at: datetime
) -> list[DoorHealth]:
    """Store each door's counters (dicts of `DoorHealth`'s fields but the keys); return rows."""
    rows = []
    for door in doors:
        row = session.get(DoorHealth, (cabinet_id, door["compartment"]))
        if row is None:
            row = DoorHealth(cabinet_id=cabinet_id, compartment=door["compartment"], reported_at=at)
        for name, value in door.items():
            if name != "compartment":
                setattr(row, name, value)
        row.reported_at = at
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def door_health(*, session: Session, cabinet_id: str) -> dict[str, DoorHealth]:
    """The latest health of each door of a cabinet that has reported any, by door."""
    rows = session.exec(
        select(DoorHealth)
        .where(col(DoorHealth.cabinet_id) == cabinet_id)
        .order_by(col(DoorHealth.compartment))
    ).all()
    return {row.compartment: row for row in rows}
