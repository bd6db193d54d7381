"""door health: each door's latest wear counters (pulses, failed unlocks, flaps, open times,
its board's bus errors) from the cabinet's birth

Revision ID: 0021_health
Revises: 0020_enrolment
Create Date: 2026-12-04 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_health"
down_revision: str | None = "0020_enrolment"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "door_health",
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("compartment", sa.String(length=16), nullable=False),
        sa.Column("board", sa.String(length=40), nullable=True),
        sa.Column("pulses", sa.BigInteger(), nullable=False),
        sa.Column("failed_unlocks", sa.BigInteger(), nullable=False),
        sa.Column("flaps", sa.BigInteger(), nullable=False),
        sa.Column("opens_timed", sa.BigInteger(), nullable=False),
        sa.Column("open_ms_recent", sa.Integer(), nullable=True),
        sa.Column("open_ms_long", sa.Integer(), nullable=True),
        sa.Column("board_requests", sa.BigInteger(), nullable=False),
        sa.Column("bus_errors", sa.BigInteger(), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cabinet_id", "compartment"),
    )


def downgrade() -> None:
    op.drop_table("door_health")
