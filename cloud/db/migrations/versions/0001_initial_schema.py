"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 10:51:15.126377
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "couriers",
        sa.Column("carrier", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pin_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "erp_api_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("webhook_secret", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_table(
        "managers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "sites",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("pickup_window_s", sa.Integer(), nullable=False),
        sa.Column("reminder_before_s", sa.Integer(), nullable=True),
        sa.Column("code_length", sa.Integer(), nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("overdue_fee_per_day_minor", sa.Integer(), nullable=False),
        sa.Column("overdue_fee_cap_minor", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("resend_limit", sa.Integer(), nullable=False),
        sa.Column("resend_window_s", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "cabinets",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("code_key", sa.String(length=128), nullable=False),
        sa.Column("mqtt_password_hash", sa.String(length=256), nullable=True),
        sa.Column("online", sa.Boolean(), nullable=True),
        sa.Column("boot", sa.BigInteger(), nullable=True),
        sa.Column("firmware", sa.String(length=64), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_upto", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("cabinets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cabinets_site_id"), ["site_id"], unique=False)

    op.create_table(
        "idempotency_keys",
        sa.Column("api_key_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("request_hash", sa.String(length=128), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["erp_api_keys.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("api_key_id", "key"),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "manager_sites",
        sa.Column("manager_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["manager_id"], ["managers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("manager_id", "site_id"),
    )
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index("ix_alarms_open", ["cabinet_id", "cleared_at"], unique=False)

    op.create_table(
        "command_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("send_count", sa.Integer(), nullable=False),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_ok", sa.Boolean(), nullable=True),
        sa.Column("ack_error", sa.String(length=1024), nullable=True),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("command_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_command_outbox_pending", ["cabinet_id", "acked_at", "created_at"], unique=False
        )

    op.create_table(
        "compartments",
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("low_door", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("in_service", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cabinet_id", "id"),
    )
    op.create_table(
        "events",
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("anomaly", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cabinet_id", "seq"),
    )
    op.create_table(
        "parcels",
        sa.Column("tracking_no", sa.String(length=64), nullable=False),
        sa.Column("order_no", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("parcel_id", sa.String(length=64), nullable=True),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=True),
        sa.Column("size", sa.String(length=4), nullable=True),
        sa.Column("courier_id", sa.String(length=64), nullable=True),
        sa.Column("code_hash", sa.String(length=256), nullable=True),
        sa.Column("code_generation", sa.Integer(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deposited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("clock_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_s", sa.Integer(), nullable=True),
        sa.Column("pauses", sa.JSON(), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("told_deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("left_locker_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cabinet_id"],
            ["cabinets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("parcel_id"),
    )
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.create_index("ix_parcels_cabinet_status", ["cabinet_id", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_parcels_order_no"), ["order_no"], unique=False)
        batch_op.create_index(batch_op.f("ix_parcels_tracking_no"), ["tracking_no"], unique=False)

    op.create_table(
        "notice_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(length=200), nullable=False),
        sa.Column("parcel_row_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("to_phone", sa.String(length=16), nullable=True),
        sa.Column("courier_id", sa.String(length=64), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code_sealed", sa.String(length=256), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("body", sa.String(length=2000), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.Column("delivery_status", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["parcel_row_id"], ["parcels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
    )
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_notice_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_notice_outbox_parcel_row_id"), ["parcel_row_id"], unique=False
        )

    op.create_table(
        "parcel_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parcel_row_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("note", sa.String(length=2000), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parcel_row_id"], ["parcels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("parcel_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_parcel_events_parcel_row_id"), ["parcel_row_id"], unique=False
        )

    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parcel_row_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["parcel_row_id"], ["parcels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_outbox_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_webhook_outbox_parcel_row_id"), ["parcel_row_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_parcel_row_id"))
        batch_op.drop_index("ix_webhook_outbox_due")

    op.drop_table("webhook_outbox")
    with op.batch_alter_table("parcel_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parcel_events_parcel_row_id"))

    op.drop_table("parcel_events")
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_outbox_parcel_row_id"))
        batch_op.drop_index("ix_notice_outbox_due")

    op.drop_table("notice_outbox")
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parcels_tracking_no"))
        batch_op.drop_index(batch_op.f("ix_parcels_order_no"))
        batch_op.drop_index("ix_parcels_cabinet_status")

    op.drop_table("parcels")
    op.drop_table("events")
    op.drop_table("compartments")
    with op.batch_alter_table("command_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_command_outbox_pending")

    op.drop_table("command_outbox")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index("ix_alarms_open")

    op.drop_table("alarms")
    op.drop_table("manager_sites")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_created_at"))

    op.drop_table("idempotency_keys")
    with op.batch_alter_table("cabinets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cabinets_site_id"))

    op.drop_table("cabinets")
    op.drop_table("sites")
    op.drop_table("managers")
    op.drop_table("erp_api_keys")
    op.drop_table("couriers")
