"""The console's audit log page: the rows a principal may read, filtered, and as CSV.

An operator admin reads every row; a site manager the rows about their sites' cabinets and the
parcels at them (not sign-ins or account changes). Principals are shown by username where the
row names an account.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from cloud.core.access import Principal, PrincipalKind
from cloud.db import console_reads
from cloud.db.console_reads import AuditFilter
from cloud.db.models import AuditLog

PAGE_SIZE = 100
CSV_COLUMNS = (
    "id", "at", "principal_kind", "principal", "action", "resource_kind", "resource_id",
    "reason", "outcome", "detail",
)  # fmt: skip

__all__ = ["AuditFilter", "AuditRow", "audit_actions", "audit_csv", "audit_rows"]


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    principal_kind: str
    principal: str  # a username where the row names an account, else its id
    action: str
    resource_kind: str
    resource_id: str | None
    reason: str
    outcome: str
    detail: str  # JSON, keys sorted


def _sites(principal: Principal) -> frozenset[str] | None:
    return None if principal.kind is PrincipalKind.OPERATOR_ADMIN else principal.site_ids


def _rows(session: Session, rows: list[AuditLog]) -> list[AuditRow]:
    names = console_reads.names_of_accounts(session=session, ids=[r.principal_id for r in rows])
    return [
        AuditRow(
            id=r.id or 0,
            at=r.at,
            principal_kind=r.principal_kind,
            principal=names.get(r.principal_id, r.principal_id),
            action=r.action,
            resource_kind=r.resource_kind,
            resource_id=r.resource_id,
            reason=r.reason,
            outcome=r.outcome,
            detail=json.dumps(r.detail, ensure_ascii=False, sort_keys=True, default=str),
        )
        for r in rows
    ]


def audit_rows(
    *, session: Session, principal: Principal, where: AuditFilter, limit: int = PAGE_SIZE
) -> list[AuditRow]:
    """Return a page of rows (newest first) the principal may read."""
    rows = console_reads.audit_search(
        session=session, site_ids=_sites(principal), where=where, limit=limit
    )
    result = _rows(session, rows)
    session.rollback()
    return result


def audit_actions(*, session: Session) -> list[str]:
    found = console_reads.audit_actions(session=session)
    session.rollback()
    return found


def audit_csv(
    *, session: Session, principal: Principal, where: AuditFilter, batch: int = 1000
) -> Iterator[str]:
    """Yield the CSV (header first) of every matching row, newest first, `batch` rows a read
    (memory stays bounded however long the log)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue()
    before: int | None = where.before_id
    while True:
        page = AuditFilter(where.action, where.text, where.since, where.until, before)
        rows = audit_rows(session=session, principal=principal, where=page, limit=batch)
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out)
        for r in rows:
            writer.writerow(
                (r.id, r.at.isoformat(), r.principal_kind, r.principal, r.action,
                 r.resource_kind, r.resource_id or "", _cell(r.reason), r.outcome,
                 _cell(r.detail))
            )  # fmt: skip
        yield out.getvalue()
        before = rows[-1].id


def _cell(text: str) -> str:
    # A cell a spreadsheet would run as a formula (=, +, -, @) is quoted as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
