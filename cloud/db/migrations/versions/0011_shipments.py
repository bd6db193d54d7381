"""shipments: the ERP's parcel dimensions, weight, courier company and pickup window override

Revision ID: 0011_shipments
Revises: 0010_statements
Create Date: 2026-12-04 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_shipments"
down_revision: str | None = "0010_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INTS = ("length_mm", "width_mm", "height_mm", "weight_g", "window_override_s")


def upgrade() -> None:
    with op.batch_alter_table("parcels") as batch:
        for name in _INTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
        batch.add_column(sa.Column("courier_company", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parcels") as batch:
        batch.drop_column("courier_company")
        for name in reversed(_INTS):
            batch.drop_column(name)
