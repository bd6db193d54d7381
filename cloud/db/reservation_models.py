"""The `reservations` table: a door the cloud asked a cabinet to hold for an announced shipment.

One row per shipment (its parcel row), written with the `compartments.reserve` command it queued;
`ended_at` is set when the parcel is deposited, the shipment is cancelled or moved, or the row is
superseded. A row counts against its cabinet's free doors while it has not ended and `until` is
in the future (`cloud.core.reservations`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)


def _time(*, nullable: bool = True) -> Any:
    return Field(default=None if nullable else ..., sa_type=UtcDateTime, nullable=nullable)


class Reservation(SQLModel, table=True):
    """A door held at `cabinet_id` for the shipment `parcel_row_id` (its id on the wire)."""

    __tablename__ = "reservations"
    # What the door check reads: a cabinet's reservations that have not ended.
    __table_args__ = (Index("ix_reservations_cabinet_ended", "cabinet_id", "ended_at"),)

    parcel_row_id: str = Field(
        sa_column_args=[ForeignKey("parcels.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
        primary_key=True,
    )
    cabinet_id: str = Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
    )
    size: str = Field(max_length=4)  # the parcel's size, as the ERP gave it or as it was derived
    door_size: str = Field(max_length=4)  # the size of door it is counted against
    until: datetime = _time(nullable=False)
    created_at: datetime = _time(nullable=False)
    ended_at: datetime | None = _time()
    ended_why: str | None = Field(default=None, max_length=16)  # deposited, cancelled, moved...
