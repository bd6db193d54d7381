"""command outbox: a codes.put names its parcel and can be superseded

Revision ID: 0003_command_supersede
Revises: 0002_scan_otps
Create Date: 2026-12-01 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_command_supersede"
down_revision: str | None = "0002_scan_otps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("command_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parcel_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("superseded_by", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_command_outbox_parcel", ["cabinet_id", "parcel_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("command_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_command_outbox_parcel")
        batch_op.drop_column("superseded_by")
        batch_op.drop_column("parcel_id")
