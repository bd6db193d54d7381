"""The audit log: what an operator or a key did, read back oldest first."""

from __future__ import annotations

from sqlmodel import Session, col, select

from cloud.db.models import AuditLog


def audit_entries(*, session: Session, resource_id: str | None = None) -> list[AuditLog]:
    """Return the audit rows, oldest first, optionally of one resource."""
    statement = select(AuditLog)
    if resource_id is not None:
        statement = statement.where(AuditLog.resource_id == resource_id)
    return list(session.exec(statement.order_by(col(AuditLog.id))))
