"""people: SMS signatures per site, cabinet names and addresses in English, a notice's language

Revision ID: 0014_people
Revises: 0013_reservations
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_people"
down_revision: str | None = "0013_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = {
    "sites": (("sms_signature", 16), ("sms_signature_en", 24)),
    "cabinets": (("name_en", 200), ("address_en", 500)),
}


def upgrade() -> None:
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, length in columns:
                batch.add_column(
                    sa.Column(name, sa.String(length=length), nullable=False, server_default="")
                )
    with op.batch_alter_table("notice_outbox") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice_outbox") as batch:
        batch.drop_column("language")
    for table, columns in _COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for name, _length in columns:
                batch.drop_column(name)
