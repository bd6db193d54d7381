"""parcels remember the expiry of the cabinet's copy of their code, so a short outage's resume
sends no codes.put

Revision ID: 0022_code_expiry
Revises: 0021_health
Create Date: 2026-12-04 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_code_expiry"
down_revision: str | None = "0021_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Left empty for parcels already in lockers: their next resume resends the code once, with
    # the slack, as before this revision.
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_column("code_expires_at")
