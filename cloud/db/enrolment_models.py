"""The enrolment tables: one-time enrolment codes, the wrong ones tried, and pushed configs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)
CLIENT_LENGTH = 64  # an IPv6 address in text is at most 45 characters
SEALED_PASSWORD_LENGTH = 128  # a 32-character password sealed (cloud.db.sealing) is 82


def _cabinet_fk(**kwargs: Any) -> Any:
    return Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
        **kwargs,
    )


class EnrolmentCode(SQLModel, table=True):
    """A one-time code a cabinet trades for its credentials (cloud.core.enrolment).

    Only the code's SHA-256 is kept. The cabinet's MQTT password waits here sealed under the
    secret key: its hash is in the registry from the start, so the broker's password file
    (`locker cloud mosquitto-config`) already admits the cabinet before it enrols. The sealed
    password is erased when the code is used.
    """

    __tablename__ = "enrolment_codes"
    __table_args__ = (Index("ix_enrolment_codes_cabinet", "cabinet_id"),)

    code_hash: str = Field(primary_key=True, max_length=64)
    cabinet_id: str = _cabinet_fk()
    mqtt_password_sealed: str | None = Field(default=None, max_length=SEALED_PASSWORD_LENGTH)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UtcDateTime, nullable=True)
    used_by: str | None = Field(default=None, max_length=CLIENT_LENGTH)  # the client's address


class EnrolmentTry(SQLModel, table=True):
    """One wrong, used or expired code sent to `POST /api/v1/enrol`: a guess, rate-limited."""

    __tablename__ = "enrolment_tries"
    __table_args__ = (Index("ix_enrolment_tries_client_at", "client", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    client: str = Field(max_length=CLIENT_LENGTH)
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


class CabinetConfigVersion(SQLModel, table=True):
    """One version of a cabinet's config body (protocol.config_push): layout, buses, settings.

    Version 1 is the one given at enrolment; each `locker cloud cabinet config-push` adds the
    next and sends it with `config.put`. The cabinet reports the hash it runs in its birth.
    """

    __tablename__ = "cabinet_configs"

    cabinet_id: str = Field(
        sa_column_args=[ForeignKey("cabinets.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
        primary_key=True,
    )
    version: int = Field(primary_key=True)
    sha256: str = Field(max_length=64)
    body: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    created_at: datetime = Field(sa_type=UtcDateTime, nullable=False)
