"""scan-to-open limits: who asked (address, nonce, parcels) and wrong tries; notices to an openid

Revision ID: 0009_scan_limits
Revises: 0008_accounts
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_scan_limits"
down_revision: str | None = "0008_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scan_otps") as batch:
        batch.add_column(sa.Column("client", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("nonce_hash", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("parcel_ids", sa.JSON(), nullable=True))
    op.create_index("ix_scan_otps_cabinet_created", "scan_otps", ["cabinet_id", "created_at"])
    op.create_index("ix_scan_otps_client_created", "scan_otps", ["client", "created_at"])
    op.create_index("ix_scan_otps_nonce", "scan_otps", ["nonce_hash"])
    op.create_table(
        "scan_tries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("nonce_hash", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_scan_tries_cabinet_at", "scan_tries", ["cabinet_id", "at"])
    op.create_index("ix_scan_tries_client_at", "scan_tries", ["client", "at"])
    op.create_index("ix_scan_tries_nonce", "scan_tries", ["nonce_hash"])
    with op.batch_alter_table("notice_outbox") as batch:
        batch.add_column(sa.Column("to_openid", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice_outbox") as batch:
        batch.drop_column("to_openid")
    op.drop_index("ix_scan_tries_nonce", table_name="scan_tries")
    op.drop_index("ix_scan_tries_client_at", table_name="scan_tries")
    op.drop_index("ix_scan_tries_cabinet_at", table_name="scan_tries")
    op.drop_table("scan_tries")
    op.drop_index("ix_scan_otps_nonce", table_name="scan_otps")
    op.drop_index("ix_scan_otps_client_created", table_name="scan_otps")
    op.drop_index("ix_scan_otps_cabinet_created", table_name="scan_otps")
    with op.batch_alter_table("scan_otps") as batch:
        batch.drop_column("parcel_ids")
        batch.drop_column("nonce_hash")
        batch.drop_column("client")
