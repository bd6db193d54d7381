"""courier settlement: per-site price table, closed statement periods and their frozen lines

Revision ID: 0010_statements
Revises: 0009_scan_limits
Create Date: 2026-12-04 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_statements"
down_revision: str | None = "0009_scan_limits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "site_prices",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("carrier_id", sa.String(length=100), nullable=False),
        sa.Column("size", sa.String(length=4), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["carrier_id"], ["carriers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id", "carrier_id", "size"),
    )
    op.create_table(
        "statement_closings",
        sa.Column("carrier_id", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("closed_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("carrier_id", "period"),
    )
    op.create_table(
        "statement_lines",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("carrier_id", sa.String(length=100), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("parcel_row_id", sa.String(length=64), nullable=False),
        sa.Column("tracking_no", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=True),
        sa.Column("size", sa.String(length=4), nullable=True),
        sa.Column("courier_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deposited_at", _utc(), nullable=False),
        sa.Column("left_at", _utc(), nullable=True),
        sa.Column("duration_s", sa.BigInteger(), nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("price_currency", sa.String(length=3), nullable=False),
        sa.Column("priced", sa.Boolean(), nullable=False),
        sa.Column("overdue_days", sa.Integer(), nullable=False),
        sa.Column("overdue_fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_currency", sa.String(length=3), nullable=False),
        sa.Column("returned", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_statement_lines_period", "statement_lines", ["carrier_id", "period", "id"])
    op.create_index(
        "ux_statement_lines_parcel",
        "statement_lines",
        ["carrier_id", "parcel_row_id"],
        unique=True,
    )
    # What a statement reads: a carrier's couriers' deposits in a month.
    op.create_index("ix_parcels_courier_deposited", "parcels", ["courier_id", "deposited_at"])


def downgrade() -> None:
    op.drop_index("ix_parcels_courier_deposited", table_name="parcels")
    op.drop_index("ux_statement_lines_parcel", table_name="statement_lines")
    op.drop_index("ix_statement_lines_period", table_name="statement_lines")
    op.drop_table("statement_lines")
    op.drop_table("statement_closings")
    op.drop_table("site_prices")
