"""The webhook tables: an ERP key's endpoints, one delivery per (event, endpoint), its attempts.

The `webhook_outbox` row (written with the parcel's change) is the event; the dispatcher fans it
out into one `webhook_deliveries` row per subscribed endpoint of the parcel's owner key, and each
try of a delivery is a `webhook_attempts` row (the delivery log an integrator reads).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from cloud.db.types import UtcDateTime

ID_LENGTH = 64  # as `cloud.db.models.ID_LENGTH` (not imported: models imports this module)
SEALED_SECRET_LENGTH = 128  # a sealed 24-byte secret is 74 characters (sealing.sealed_length)


def _time(*, nullable: bool = True) -> Any:
    return Field(default=None if nullable else ..., sa_type=UtcDateTime, nullable=nullable)


class WebhookEndpoint(SQLModel, table=True):
    """Where an ERP key wants its events, and the secret(s) they are signed with (sealed)."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True, max_length=ID_LENGTH)
    key_id: str = Field(
        sa_column_args=[ForeignKey("erp_api_keys.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
        index=True,
    )
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(sa_type=JSON)
    secret_sealed: str = Field(max_length=SEALED_SECRET_LENGTH)
    # After a rotation the old secret signs too, until `previous_until` (the grace period).
    previous_secret_sealed: str | None = Field(default=None, max_length=SEALED_SECRET_LENGTH)
    previous_until: datetime | None = _time()
    status: str = Field(default="active", max_length=16)  # active | disabled
    disabled_reason: str | None = Field(default=None, max_length=500)
    # Since when every attempt failed (None after a success): what disabling is decided on.
    failing_since: datetime | None = _time()
    failures: int = 0  # attempts failed in a row
    created_at: datetime = _time(nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: pending until delivered or dead (retries ran out)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "endpoint_id", "parcel_row_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(
        sa_column_args=[ForeignKey("webhook_outbox.id", ondelete="CASCADE")], index=True
    )
    endpoint_id: str = Field(
        sa_column_args=[ForeignKey("webhook_endpoints.id", ondelete="CASCADE")],
        sa_type=String(ID_LENGTH),
    )
    parcel_row_id: str = Field(max_length=ID_LENGTH)  # its order: one parcel's events in turn
    status: str = Field(default="pending", max_length=16)  # pending | delivered | dead
    attempts: int = 0
    next_attempt_at: datetime = _time(nullable=False)
    first_attempt_at: datetime | None = _time()  # the retry horizon counts from here
    last_error: str | None = Field(default=None, max_length=1024)
    created_at: datetime = _time(nullable=False)
    delivered_at: datetime | None = _time()


class WebhookAttempt(SQLModel, table=True):
    """One try of a delivery: what the receiver answered and how long it took."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_endpoint_at", "endpoint_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(
        sa_column_args=[ForeignKey("webhook_deliveries.id", ondelete="CASCADE")], index=True
    )
    endpoint_id: str = Field(max_length=ID_LENGTH)
    status_code: int | None = None
    latency_ms: int = 0
    error: str | None = Field(default=None, max_length=1024)
    at: datetime = _time(nullable=False)
