"""parcels by (created_at, id): the ERP's shipment list at size

The shipment list pages by (created_at, id) and the parcel list by its reverse; without an index
on that order PostgreSQL read every parcel of the key's scope and sorted it for each page (a
bitmap scan of a quarter of a million rows at a million parcels). The tracking read needed none:
its parcel comes by ix_parcels_tracking_no and its few timeline rows by their parcel's index.
`locker bench queries` measures both (docs/benchmarks.md).

Revision ID: 0023_query_indexes
Revises: 0022_code_expiry
Create Date: 2026-12-04 19:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_query_indexes"
down_revision: str | None = "0022_code_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_parcels_created_id", "parcels", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_parcels_created_id", table_name="parcels")
