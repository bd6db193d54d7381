"""parcels remember when the expiry scan must look at them again

The worker's expiry scan read every parcel in a locker every 30 s and judged each: 2.8 s of CPU
for 50,000 parcels, growing with the parcels kept, so at a city's size (a quarter of a million
parcels behind doors) it alone would have filled most of a core. `due_check_at` is when the
scan must judge a parcel again: its next reminder or deadline as the core computes it (a lower
bound: nothing can be due earlier unless the parcel changes). Every write of a parcel through
the core clears it (`cloud.db.parcels.parcel_values`), so a change is judged at the next scan.
NULL: judge it at the next scan (every parcel already in a locker, once, after this revision).

Revision ID: 0024_expiry_check
Revises: 0023_query_indexes
Create Date: 2026-12-05 02:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024_expiry_check"
down_revision: str | None = "0023_query_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_LOCKER = "status = 'in_locker'"


def upgrade() -> None:
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_check_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_parcels_due_check",
        "parcels",
        ["due_check_at"],
        postgresql_where=sa.text(IN_LOCKER),
        sqlite_where=sa.text(IN_LOCKER),
    )


def downgrade() -> None:
    op.drop_index("ix_parcels_due_check", table_name="parcels")
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_column("due_check_at")
