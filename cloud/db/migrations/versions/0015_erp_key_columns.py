"""drop erp_api_keys.webhook_url and webhook_secret: endpoints live in webhook_endpoints

A key's webhooks are its rows in `webhook_endpoints` (0012), each with its own sealed secret;
the two columns of the first schema were never read or written by anything since, and a
plaintext HMAC key in a column nothing uses is only a liability.

Revision ID: 0015_erp_key_columns
Revises: 0014_people
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_erp_key_columns"
down_revision: str | None = "0014_people"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("erp_api_keys", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret")
        batch_op.drop_column("webhook_url")


def downgrade() -> None:
    with op.batch_alter_table("erp_api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret", sa.String(length=128), nullable=True))
