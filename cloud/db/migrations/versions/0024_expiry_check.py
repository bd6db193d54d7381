"""parcels remember when the expiry scan must look at them again

The worker's expiry scan read every parcel in a locker every 30 s and judged each: 2.8 s of CPU
for 50,000 parcels, growing with the parcels kept, so at a city's size (a quarter of a million
parcels behind doors) it alone would have filled most of a core. `due_check_at` is when the
scan must judge a parcel again: its next reminder or deadline as the core computes it (a lower
bound: nothing can be due earlier unless the parcel changes). Every write of a parcel through
the core sets it afresh (`cloud.db.parcels.parcel_values`). NULL: judge it at the next scan
(every parcel already in a locker, once, after this revision).

No index of its own: the scan finds a site's parcels in a locker by ix_parcels_cabinet_status
and PostgreSQL filters their check times (about 20 ms for 50,000), where an index on the column
cost every deposit a write more (`locker bench cloud` at 1,000/s: PostgreSQL 0.27 -> 0.32 ms an
event, publish -> `codes.put` p50 35 -> 55 ms).

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


def upgrade() -> None:
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_check_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_column("due_check_at")
