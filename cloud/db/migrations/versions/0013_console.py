"""console: signed-in sessions, failed sign-ins, when a cabinet's presence last changed, and
an index of the parcels behind doors

Revision ID: 0013_console
Revises: 0012_webhooks
Create Date: 2026-12-04 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_TIME = sa.DateTime(timezone=True)

revision: str = "0013_console"
down_revision: str | None = "0012_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As cloud.db.models.PARCELS_BEHIND_DOORS when this revision was written.
BEHIND_DOORS = "left_locker_at IS NULL AND status IN ('in_locker', 'expired')"


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("last_used_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_console_sessions_account_id", "console_sessions", ["account_id"])
    op.create_index("ix_console_sessions_expires_at", "console_sessions", ["expires_at"])
    op.create_table(
        "console_sign_in_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_console_sign_in_failures_at", "console_sign_in_failures", ["at"])
    op.create_index(
        "ix_console_sign_in_failures_username", "console_sign_in_failures", ["username"]
    )
    op.create_index("ix_console_sign_in_failures_address", "console_sign_in_failures", ["address"])
    with op.batch_alter_table("cabinets") as batch:
        batch.add_column(sa.Column("presence_since", _TIME, nullable=True))
    op.create_index(
        "ix_parcels_behind_doors",
        "parcels",
        ["cabinet_id", "status"],
        postgresql_where=sa.text(BEHIND_DOORS),
        sqlite_where=sa.text(BEHIND_DOORS),
    )


def downgrade() -> None:
    op.drop_index("ix_parcels_behind_doors", table_name="parcels")
    with op.batch_alter_table("cabinets") as batch:
        batch.drop_column("presence_since")
    op.drop_table("console_sign_in_failures")
    op.drop_table("console_sessions")
