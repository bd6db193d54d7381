"""The scan-to-open tables: one-time SMS codes, and the wrong tries that count against limits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)
CLIENT_LENGTH = 64  # an IPv6 address in text is at most 45 characters
NONCE_HASH_LENGTH = 32  # hex of 128 bits of SHA-256 (`scan_open.nonce_hash`)


class ScanOtp(SQLModel, table=True):
    """A one-time code asked for at scan-to-open: its keyed hash only, its deadline, tries left.

    Kept (not a signed token) because "limited attempts" and "one time" need a counter the
    client cannot reset by replaying an old token; the rows also serve as the rate limits' log
    (by phone, by cabinet, by client address and by the QR's nonce). `parcel_ids` are the
    phone's parcels in the cabinet when the code was asked for: the only ones it may open.
    """

    __tablename__ = "scan_otps"
    __table_args__ = (
        Index("ix_scan_otps_phone_created", "phone", "created_at"),
        Index("ix_scan_otps_cabinet_created", "cabinet_id", "created_at"),
        Index("ix_scan_otps_client_created", "client", "created_at"),
        Index("ix_scan_otps_nonce", "nonce_hash"),
    )

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
    client: str | None = Field(default=None, max_length=CLIENT_LENGTH)  # who asked (IP address)
    nonce_hash: str | None = Field(default=None, max_length=NONCE_HASH_LENGTH)
    parcel_ids: list[str] | None = Field(default=None, sa_type=JSON, nullable=True)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class ScanTry(SQLModel, table=True):
    """One wrong one-time code typed at scan-to-open: a guess, counted against the limits.

    Per cabinet and day, per client address and per QR nonce (`scan_open.TRIES_PER_*`): the
    cabinet-day count is what bounds a remote guesser's chance of opening a door.
    """

    __tablename__ = "scan_tries"
    __table_args__ = (
        Index("ix_scan_tries_cabinet_at", "cabinet_id", "at"),
        Index("ix_scan_tries_client_at", "client", "at"),
        Index("ix_scan_tries_nonce", "nonce_hash"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cabinet_id: str = Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
    )
    client: str | None = Field(default=None, max_length=CLIENT_LENGTH)
    nonce_hash: str = Field(max_length=NONCE_HASH_LENGTH)
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)
