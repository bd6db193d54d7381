"""reservations: doors held at a cabinet for announced shipments (compartments.reserve)

Revision ID: 0013_reservations
Revises: 0012_webhooks
Create Date: 2026-12-04 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_TIME = sa.DateTime(timezone=True)

revision: str = "0013_reservations"
down_revision: str | None = "0012_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("parcel_row_id", sa.String(length=64), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("door_size", sa.String(length=4), nullable=False),
        sa.Column("until", _TIME, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("ended_at", _TIME, nullable=True),
        sa.Column("ended_why", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["parcel_row_id"], ["parcels.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("parcel_row_id"),
    )
    op.create_index("ix_reservations_cabinet_ended", "reservations", ["cabinet_id", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_reservations_cabinet_ended", table_name="reservations")
    op.drop_table("reservations")
