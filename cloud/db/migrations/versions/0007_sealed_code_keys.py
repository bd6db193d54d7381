"""cabinets: seal each code key under the secret key (it was stored in clear)

Revision ID: 0007_sealed_code_keys
Revises: 0006_command_due_index
Create Date: 2026-12-04 16:00:00

With a cabinet's code key and a stored code hash, a leaked database gave every live pickup code
in minutes (10**8 HMACs). The keys are now sealed as the outbox codes are (AES-256-GCM under a key
derived from LOCKER_CLOUD_SECRET_KEY, `cloud.db.sealing`), which this migration needs when any
cabinet exists: it reads the same settings as the API and the workers, and stops with a message
naming the setting if it is unset. Codes still waiting in the notice outbox sealed under the
public demo key that shipped until now are sealed again under the configured key, so the notices
waiting at the upgrade still go out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloud.db.sealing import SealError, is_sealed, seal, seal_bytes, unseal, unseal_bytes
from cloud.settings import (
    MAKE_SECRET_KEY,
    PUBLIC_SECRET_KEYS,
    SECRET_KEY_ENV,
    SettingsError,
    load_settings,
)

revision: str = "0007_sealed_code_keys"
down_revision: str | None = "0006_command_due_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CABINETS = sa.table("cabinets", sa.column("id", sa.String), sa.column("code_key", sa.String))
_OUTBOX = sa.table(
    "notice_outbox",
    sa.column("id", sa.Integer),
    sa.column("dedupe_key", sa.String),
    sa.column("code_sealed", sa.String),
)


def _context(cab: str) -> str:
    return f"cabinets.code_key/{cab}"  # as cloud.db.repo.code_key_context when this was written


def _secret_key() -> bytes:
    settings = load_settings()  # a weak value is refused here as everywhere (SettingsError)
    if settings.secret_key is None:
        raise SettingsError(
            f"{SECRET_KEY_ENV} is not set: this upgrade seals the cabinets' code keys with it. "
            f"Make one with `{MAKE_SECRET_KEY}`, set it as for the API and workers, and run "
            "the upgrade again (nothing was changed)."
        )
    return settings.require_secret_key()


def upgrade() -> None:
    bind = op.get_bind()
    clear = [
        (cab, key)
        for cab, key in bind.execute(sa.select(_CABINETS.c.id, _CABINETS.c.code_key))
        if not is_sealed(key)
    ]
    waiting = bind.execute(
        sa.select(_OUTBOX.c.id, _OUTBOX.c.dedupe_key, _OUTBOX.c.code_sealed).where(
            _OUTBOX.c.code_sealed.is_not(None)
        )
    ).all()
    if not clear and not waiting:
        return  # an empty database (or nothing to seal) needs no key
    seal_key = _secret_key()
    for cab, key in clear:
        sealed = seal_bytes(seal_key, bytes.fromhex(key), context=_context(cab))
        bind.execute(_CABINETS.update().where(_CABINETS.c.id == cab).values(code_key=sealed))
    for row_id, dedupe_key, sealed in waiting:
        for public in PUBLIC_SECRET_KEYS:
            try:
                code = unseal(public.encode(), sealed, context=dedupe_key)
            except SealError:
                continue  # sealed under a key of its own: it stays as it is
            bind.execute(
                _OUTBOX.update()
                .where(_OUTBOX.c.id == row_id)
                .values(code_sealed=seal(seal_key, code, context=dedupe_key))
            )


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(_CABINETS.c.id, _CABINETS.c.code_key)).all()
    sealed = [(cab, key) for cab, key in rows if is_sealed(key)]
    if not sealed:
        return
    seal_key = _secret_key()
    for cab, key in sealed:
        clear = unseal_bytes(seal_key, key, context=_context(cab)).hex()
        bind.execute(_CABINETS.update().where(_CABINETS.c.id == cab).values(code_key=clear))
