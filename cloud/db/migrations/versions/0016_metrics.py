"""events: a partial index of the events not applied yet, for the API's /metrics

Revision ID: 0016_metrics
Revises: 0015_erp_key_columns
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_metrics"
down_revision: str | None = "0015_erp_key_columns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As cloud.db.models.EVENTS_UNAPPLIED when this revision was written.
UNAPPLIED = "NOT applied"


def upgrade() -> None:
    op.create_index(
        "ix_events_unapplied",
        "events",
        ["received_at"],
        postgresql_where=sa.text(UNAPPLIED),
        sqlite_where=sa.text(UNAPPLIED),
    )


def downgrade() -> None:
    op.drop_index("ix_events_unapplied", table_name="events")
