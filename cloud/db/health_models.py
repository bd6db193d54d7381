"""The `door_health` table: each door's latest wear counters, as its cabinet last reported them.

One row per door (cabinet, compartment), replaced whole by every birth that carries `health`
(docs/mqtt.md). The board's figures (`board`, `board_requests`, `bus_errors`) are the door's
board's, repeated on each of its doors so the console's door grid reads one row per door.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)


class DoorHealth(SQLModel, table=True):
    """The latest health of one door (`cloud.core.health` judges its open-time drift)."""

    __tablename__ = "door_health"

    cabinet_id: str = Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        primary_key=True,
        max_length=ID_LENGTH,
    )
    compartment: str = Field(primary_key=True, max_length=16)
    board: str | None = Field(default=None, max_length=40)
    pulses: int = Field(default=0, sa_type=BigInteger)
    failed_unlocks: int = Field(default=0, sa_type=BigInteger)
    flaps: int = Field(default=0, sa_type=BigInteger)
    opens_timed: int = Field(default=0, sa_type=BigInteger)
    open_ms_recent: int | None = None
    open_ms_long: int | None = None
    board_requests: int = Field(default=0, sa_type=BigInteger)
    bus_errors: int = Field(default=0, sa_type=BigInteger)
    reported_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
