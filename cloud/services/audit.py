"""The audit log's one writer: `record` adds a row in the caller's transaction.

Every privileged act (cloud.core.access.AUDITED) calls it before its own commit, so the act and
its row commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from cloud.core.access import AuditEntry, Principal, PrincipalKind
from cloud.db import audit
from cloud.db.models import AuditLog

# Who acts from the command line: whoever runs `locker cloud ...` on the server holds the
# database's credentials, i.e. is an operator admin. Named by the OS user when known.
CLI_PRINCIPAL_ID_PREFIX = "cli:"


def cli_principal(user: str | None = None) -> Principal:
    """The operator admin acting through `locker cloud ...` (as OS user `user`, if known)."""
    import getpass

    if user is None:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
            user = "unknown"
    return Principal(PrincipalKind.OPERATOR_ADMIN, CLI_PRINCIPAL_ID_PREFIX + user)


def record(*, session: Session, entry: AuditEntry, now: datetime) -> AuditLog:
    """Add `entry` as an audit row to the session's transaction (the caller commits)."""
    row = AuditLog(
        at=now,
        principal_kind=str(entry.principal_kind),
        principal_id=entry.principal_id[:120],
        action=str(entry.action),
        resource_kind=str(entry.resource_kind),
        resource_id=entry.resource_id[:120] if entry.resource_id is not None else None,
        reason=entry.reason[:2000],
        outcome=entry.outcome,
        detail=dict(entry.detail),
    )
    session.add(row)
    return row


def entries(*, session: Session, resource_id: str | None = None) -> list[AuditLog]:
    """Return the audit rows, oldest first, optionally of one resource."""
    return audit.audit_entries(session=session, resource_id=resource_id)
