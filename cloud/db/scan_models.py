"""The scan-to-open table: one-time SMS codes a recipient at a cabinet's QR proves a phone with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)


class ScanOtp(SQLModel, table=True):
    """A one-time code sent for scan-to-open: its keyed hash only, its deadline, tries left.

    Kept (not a signed token) because "limited attempts" and "one time" need a counter the
    client cannot reset by replaying an old token; the rows also serve as the rate limit's log.
    """

    __tablename__ = "scan_otps"
    __table_args__ = (Index("ix_scan_otps_phone_created", "phone", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    cabinet_id: str = Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
    )
    phone: str = Field(max_length=16)  # E.164
    code_hash: str = Field(max_length=256)  # cloud.core.codes.issue_one_time_code's keyed hash
    expires_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    attempts_left: int
    used: bool = False
    sent: bool = False  # False: the phone had no parcel there, so no SMS went out
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
