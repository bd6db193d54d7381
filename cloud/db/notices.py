"""The notice outbox: queue a notice once by dedupe key, claim due ones, lock one to settle it.

A row's states, and the moves between them that more than one module makes:

    queued ──claim──> sending ──provider accepted──> sent
      ^                 │ ├──retryable failure──> queued (next_attempt_at = backoff)
      └─────────────────┘ ├──permanent failure, no channel left──> failed
                          └──answer lost / lease ran out──> unknown ──Twilio callback──> sent

`sending` is committed, with a fresh attempt token in `provider_id`, before any provider is
called, so no other dispatcher can take the row and a crashed one leaves a trace: a row still
`sending` after its lease may have been sent, and is never sent again automatically.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from cloud.core import parcels as core
from cloud.core.notices import NoticeKind, send_after
from cloud.core.policies import SitePolicy
from cloud.db.models import NoticeOutbox
from cloud.db.rows import insert_ignore
from cloud.db.sealing import seal

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
UNKNOWN = "unknown"  # maybe sent: a human decides (or a provider callback settles it)
SKIPPED = "skipped"  # a manager's alarm notice whose alarm was resolved before it could go


def enqueue_notice(
    *,
    session: Session,
    parcel_row_id: str,
    notify: core.Notify,
    policy: SitePolicy,
    seal_key: bytes,
    now: datetime,
) -> bool:
    """Queue a notice unless its dedupe key is queued already; return whether it was added.

    The pickup code, if the notice shows one, is sealed (`cloud.db.sealing`); the dispatcher
    renders the text at send time, so the clear code never reaches the database.
    """
    added = insert_ignore(
        session=session,
        table=NoticeOutbox.__table__,
        rows=[notice_values(parcel_row_id, notify, policy=policy, seal_key=seal_key, now=now)],
        conflict_columns=["dedupe_key"],
        returning=["dedupe_key"],
    )
    return bool(added)


def notice_values(
    parcel_row_id: str, notify: core.Notify, *, policy: SitePolicy, seal_key: bytes, now: datetime
) -> dict[str, Any]:
    """Return a queued `notice_outbox` row's columns (but its id and defaults), code sealed."""
    code_sealed = seal(seal_key, notify.code, context=notify.dedupe_key) if notify.code else None
    return {
        "dedupe_key": notify.dedupe_key,
        "parcel_row_id": parcel_row_id,
        "kind": notify.kind.value,
        "audience": notify.audience.value,
        "to_phone": notify.phone,
        "courier_id": notify.courier_id,
        "deadline": notify.deadline,
        "code_sealed": code_sealed,
        "status": QUEUED,
        "attempts": 0,
        "next_attempt_at": send_after(notify.kind, now, policy),
        "created_at": now,
    }


def enqueue_alarm_notice(
    *,
    session: Session,
    alarm_id: int,
    account_id: str,
    phone: str,
    seen_at: datetime,
    send_at: datetime,
    now: datetime,
) -> bool:
    """Queue a manager's notice of a new alarm, once per alarm and manager; return if added."""
    added = insert_ignore(
        session=session,
        table=NoticeOutbox.__table__,
        rows=[
            {
                "dedupe_key": f"alarm/{alarm_id}/{account_id}"[:200],
                "parcel_row_id": None,
                "alarm_id": alarm_id,
                "kind": NoticeKind.ALARM.value,
                "audience": "manager",
                "to_phone": phone,
                "deadline": seen_at,
                "status": QUEUED,
                "attempts": 0,
                "next_attempt_at": send_at,
                "created_at": now,
            }
        ],
        conflict_columns=["dedupe_key"],
        returning=["dedupe_key"],
    )
    return bool(added)


def resend_history(*, session: Session, parcel_row_id: str) -> list[datetime]:
    """Return when resend notices of a parcel were queued (for `notices.resend_decision`)."""
    statement = select(NoticeOutbox.created_at).where(
        NoticeOutbox.parcel_row_id == parcel_row_id, NoticeOutbox.kind == NoticeKind.RESEND.value
    )
    return list(session.exec(statement))


def claim_next_due(*, session: Session, now: datetime) -> NoticeOutbox | None:
    """Return the next queued notice due at `now`, locked (`SKIP LOCKED`: another dispatcher's
    claim is passed over, not waited for)."""
    due = (
        select(NoticeOutbox)
        .where(NoticeOutbox.status == QUEUED, col(NoticeOutbox.next_attempt_at) <= now)
        .order_by(col(NoticeOutbox.next_attempt_at), col(NoticeOutbox.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.exec(due).first()


def lock_notice(*, session: Session, notice_id: int) -> NoticeOutbox | None:
    """Return a notice row locked for this transaction."""
    locked = select(NoticeOutbox).where(NoticeOutbox.id == notice_id).with_for_update()
    return session.exec(locked).first()


def lock_notice_by_provider_id(*, session: Session, provider_id: str) -> NoticeOutbox | None:
    """Return the notice a provider knows as `provider_id`, locked for this transaction."""
    locked = select(NoticeOutbox).where(NoticeOutbox.provider_id == provider_id).with_for_update()
    return session.exec(locked).first()


def lost_sends(*, session: Session, now: datetime, limit: int) -> list[NoticeOutbox]:
    """Return up to `limit` notices still `sending` after their lease ran out, locked."""
    stale = (
        select(NoticeOutbox)
        .where(NoticeOutbox.status == SENDING, col(NoticeOutbox.next_attempt_at) <= now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(session.exec(stale))


def attempt_marker(token: str) -> str:
    """Return what `provider_id` holds while an attempt is in flight (no provider id yet)."""
    return f"attempt:{token}"


def settle_as_sent(row: NoticeOutbox, *, provider_id: str, channel: str, now: datetime) -> None:
    """Mark a row sent: keep the provider's id, drop the sealed code (the body is scrubbed)."""
    row.status = SENT
    row.provider_id = provider_id
    row.channel = channel
    row.code_sealed = None
    row.sent_at = row.sent_at or now
