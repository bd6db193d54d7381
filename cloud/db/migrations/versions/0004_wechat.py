"""WeChat: openid-to-phone bindings and the pushed messages seen

Revision ID: 0004_wechat
Revises: 0003_command_supersede
Create Date: 2026-12-01 09:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_wechat"
down_revision: str | None = "0003_command_supersede"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wechat_bindings",
        sa.Column("openid", sa.String(length=128), nullable=False),
        sa.Column("phone", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("openid"),
    )
    op.create_index("ix_wechat_bindings_phone", "wechat_bindings", ["phone"])
    op.create_table(
        "wechat_inbox",
        sa.Column("msg_id", sa.String(length=64), nullable=False),
        sa.Column("openid", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("msg_id"),
    )
    op.create_index("ix_wechat_inbox_received_at", "wechat_inbox", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_wechat_inbox_received_at", table_name="wechat_inbox")
    op.drop_table("wechat_inbox")
    op.drop_index("ix_wechat_bindings_phone", table_name="wechat_bindings")
    op.drop_table("wechat_bindings")
