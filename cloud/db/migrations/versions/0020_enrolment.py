"""enrolment: one-time enrolment codes (hash only, the MQTT password sealed until used), the
wrong codes tried (rate limit), and the versions of each cabinet's pushed config

Revision ID: 0020_enrolment
Revises: 0019_fleet_indexes
Create Date: 2026-12-04 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

_TIME = sa.DateTime(timezone=True)

revision: str = "0020_enrolment"
down_revision: str | None = "0019_fleet_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "enrolment_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("mqtt_password_sealed", sa.String(length=128), nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME, nullable=True),
        sa.Column("used_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_enrolment_codes_cabinet", "enrolment_codes", ["cabinet_id"])
    op.create_table(
        "enrolment_tries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_enrolment_tries_client_at", "enrolment_tries", ["client", "at"])
    op.create_table(
        "cabinet_configs",
        sa.Column("cabinet_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["cabinet_id"], ["cabinets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cabinet_id", "version"),
    )


def downgrade() -> None:
    op.drop_table("cabinet_configs")
    op.drop_index("ix_enrolment_tries_client_at", table_name="enrolment_tries")
    op.drop_table("enrolment_tries")
    op.drop_index("ix_enrolment_codes_cabinet", table_name="enrolment_codes")
    op.drop_table("enrolment_codes")
