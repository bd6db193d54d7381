"""alarms: first/last seen, count, one open alarm per cabinet+door+kind, acknowledge, resolve;
a site's offline threshold; a manager's phone; notices about an alarm in the notice outbox

Revision ID: 0018_alarms
Revises: 0017_console
Create Date: 2026-12-04 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_TIME = sa.DateTime(timezone=True)

revision: str = "0018_alarms"
down_revision: str | None = "0017_console"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("severity", sa.String(length=16), nullable=False, server_default="warning")
        )
        batch_op.add_column(sa.Column("last_seen_at", _TIME, nullable=True))
        batch_op.add_column(sa.Column("count", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("open_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("acked_at", _TIME, nullable=True))
        batch_op.add_column(sa.Column("acked_by", sa.String(length=120), nullable=True))
        batch_op.add_column(
            sa.Column("ack_note", sa.String(length=2000), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("resolved_by", sa.String(length=120), nullable=True))
        batch_op.add_column(
            sa.Column("resolve_note", sa.String(length=2000), nullable=False, server_default="")
        )
        batch_op.create_unique_constraint("uq_alarms_open_key", ["open_key"])
    # Alarms written before this revision stay as they were: each its own row, closed by nobody.
    op.execute("UPDATE alarms SET last_seen_at = at")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("offline_alarm_s", sa.Integer(), nullable=False, server_default="600")
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=16), nullable=True))
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.alter_column("parcel_row_id", existing_type=sa.String(length=64), nullable=True)
        batch_op.add_column(sa.Column("alarm_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_notice_outbox_alarm_id", "alarms", ["alarm_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    op.execute("DELETE FROM notice_outbox WHERE parcel_row_id IS NULL")
    with op.batch_alter_table("notice_outbox", schema=None) as batch_op:
        batch_op.drop_constraint("fk_notice_outbox_alarm_id", type_="foreignkey")
        batch_op.drop_column("alarm_id")
        batch_op.alter_column("parcel_row_id", existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("phone")
    with op.batch_alter_table("sites", schema=None) as batch_op:
        batch_op.drop_column("offline_alarm_s")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_constraint("uq_alarms_open_key", type_="unique")
        for column in (
            "resolve_note",
            "resolved_by",
            "ack_note",
            "acked_by",
            "acked_at",
            "open_key",
            "count",
            "last_seen_at",
            "severity",
        ):
            batch_op.drop_column(column)
