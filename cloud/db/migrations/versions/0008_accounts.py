"""who may do what: accounts with roles, carriers, ERP keys bound to an owner and sites, audit log

Drops the `managers` / `manager_sites` tables nothing used (no code ever wrote them) in favour of
`accounts` / `account_sites`; an existing ERP key keeps working only once it is bound (the API
refuses a key with no carrier or merchant).

Revision ID: 0008_accounts
Revises: 0007_sealed_code_keys
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_accounts"
down_revision: str | None = "0007_sealed_code_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_table("manager_sites")
    op.drop_table("managers")
    op.create_table(
        "carriers",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every carrier the couriers already name becomes a carrier row, so keys and accounts can
    # be bound to it.
    op.execute(
        "INSERT INTO carriers (id, name, created_at) "
        "SELECT DISTINCT carrier, carrier, CURRENT_TIMESTAMP FROM couriers"
    )
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("totp_secret_sealed", sa.String(length=256), nullable=True),
        sa.Column("carrier_id", sa.String(length=100), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(["carrier_id"], ["carriers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "account_sites",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "site_id"),
    )
    with op.batch_alter_table("erp_api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("carrier_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("merchant_id", sa.String(length=64), nullable=True))
        batch_op.create_foreign_key(
            "fk_erp_api_keys_carrier_id_carriers", "carriers", ["carrier_id"], ["id"]
        )
    op.create_table(
        "erp_key_sites",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["erp_api_keys.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("key_id", "site_id"),
    )
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("owner_carrier_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("owner_merchant_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_parcels_owner_carrier_id"), ["owner_carrier_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_parcels_owner_merchant_id"), ["owner_merchant_id"], unique=False
        )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("principal_kind", sa.String(length=32), nullable=False),
        sa.Column("principal_id", sa.String(length=120), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_kind", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=120), nullable=True),
        sa.Column("reason", sa.String(length=2000), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index(
            "ix_audit_log_resource", ["resource_kind", "resource_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("parcels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parcels_owner_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_parcels_owner_carrier_id"))
        batch_op.drop_column("owner_merchant_id")
        batch_op.drop_column("owner_carrier_id")
        batch_op.drop_column("owner_key_id")
    op.drop_table("erp_key_sites")
    with op.batch_alter_table("erp_api_keys", schema=None) as batch_op:
        batch_op.drop_constraint("fk_erp_api_keys_carrier_id_carriers", type_="foreignkey")
        batch_op.drop_column("merchant_id")
        batch_op.drop_column("carrier_id")
    op.drop_table("account_sites")
    op.drop_table("accounts")
    op.drop_table("carriers")
    op.create_table(
        "managers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("password_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "manager_sites",
        sa.Column("manager_id", sa.String(length=64), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["manager_id"], ["managers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("manager_id", "site_id"),
    )
