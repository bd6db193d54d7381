"""The console's tables: signed-in sessions and failed sign-ins (docs/console.md).

A session row is keyed by the SHA-256 of the cookie's token, so a copy of the table signs no one
in. A failed sign-in is one row (who was tried, from where, when): the lockout counts them in a
sliding window (cloud.core.lockout), per account and per address.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)


def _time(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(
        default=None if nullable else ..., sa_type=UtcDateTime, nullable=nullable, index=index
    )


class ConsoleSession(SQLModel, table=True):
    """A signed-in console session: whose, its CSRF token, when it ends."""

    __tablename__ = "console_sessions"

    token_hash: str = Field(primary_key=True, max_length=64)  # sha256 hex of the cookie's token
    account_id: str = Field(
        sa_column_args=[ForeignKey("accounts.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
        index=True,
    )
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _time(nullable=False)
    last_used_at: datetime = _time(nullable=False)  # the idle timeout counts from here
    expires_at: datetime = _time(nullable=False, index=True)  # the absolute end


class SignInFailure(SQLModel, table=True):
    """One failed console sign-in: the username tried and the address it came from."""

    __tablename__ = "console_sign_in_failures"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _time(nullable=False, index=True)
    username: str = Field(max_length=120, index=True)
    address: str = Field(max_length=64, index=True)
