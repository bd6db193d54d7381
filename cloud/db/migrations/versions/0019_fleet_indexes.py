"""the fleet page's indexes: the parcels behind doors carry their deadline (the overdue counts
read the index alone), and a faulted door is found without reading every door

Revision ID: 0019_fleet_indexes
Revises: 0018_alarms
Create Date: 2026-12-04 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_fleet_indexes"
down_revision: str | None = "0018_alarms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEHIND_DOORS = "left_locker_at IS NULL AND status IN ('in_locker', 'expired')"
FAULTED = "state = 'faulted'"


def upgrade() -> None:
    op.drop_index("ix_parcels_behind_doors", table_name="parcels")
    op.create_index(
        "ix_parcels_behind_doors",
        "parcels",
        ["cabinet_id", "status", "told_deadline"],
        postgresql_where=sa.text(BEHIND_DOORS),
        sqlite_where=sa.text(BEHIND_DOORS),
    )
    op.create_index(
        "ix_compartments_faulted",
        "compartments",
        ["cabinet_id"],
        postgresql_where=sa.text(FAULTED),
        sqlite_where=sa.text(FAULTED),
    )


def downgrade() -> None:
    op.drop_index("ix_compartments_faulted", table_name="compartments")
    op.drop_index("ix_parcels_behind_doors", table_name="parcels")
    op.create_index(
        "ix_parcels_behind_doors",
        "parcels",
        ["cabinet_id", "status"],
        postgresql_where=sa.text(BEHIND_DOORS),
        sqlite_where=sa.text(BEHIND_DOORS),
    )
