"""couriers: a phone to tell them when a parcel of theirs expired

Revision ID: 0005_courier_phone
Revises: 0004_wechat
Create Date: 2026-12-01 09:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_courier_phone"
down_revision: str | None = "0004_wechat"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("couriers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("couriers", schema=None) as batch_op:
        batch_op.drop_column("phone")
