"""command_outbox: a partial index of the commands still in play, for the dispatcher's due query

Revision ID: 0006_command_due_index
Revises: 0005_courier_phone
Create Date: 2026-12-01 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_command_due_index"
down_revision: str | None = "0005_courier_phone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As cloud.db.models.COMMANDS_IN_PLAY when this revision was written.
IN_PLAY = "acked_at IS NULL AND ack_error IS NULL AND superseded_by IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_command_outbox_due",
        "command_outbox",
        ["created_at", "id"],
        postgresql_where=sa.text(IN_PLAY),
        sqlite_where=sa.text(IN_PLAY),
    )


def downgrade() -> None:
    op.drop_index("ix_command_outbox_due", table_name="command_outbox")
