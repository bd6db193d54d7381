"""A provider's word on a notice it was given: the delivery status a callback reports.

The Twilio adapter (`cloud.notify.sms_twilio.record_status_callback`) checks the callback's
signature and reads its fields; this service owns the transaction that records them, with the
notice row locked so the dispatcher's own record of the attempt cannot interleave.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlmodel import Session

from cloud.core.phones import mask_phone
from cloud.db import notices
from cloud.db.engine import write_session
from cloud.db.models import NoticeOutbox
from cloud.db.notices import attempt_marker, settle_as_sent

log = logging.getLogger(__name__)


def record_delivery(
    *,
    session: Session,
    provider_id: str,
    status: str,
    error_code: str | None,
    attempt_ref: str,
    channel: str,
    provider: str,
    status_rank: Mapping[str, int],
    now: datetime,
) -> NoticeOutbox | None:
    """Record a delivery status on the notice the provider knows as `provider_id`, and commit.

    Return the row, None if no notice is the provider's. A notice the dispatcher left "maybe
    sent" (it crashed before recording the provider's id) is found by `attempt_ref`
    (`<notice id>.<attempt token>`, which the adapter put in the callback URL) and settled as
    sent. A status never moves back to one of a lower `status_rank` (callbacks may come out of
    order).
    """
    if session.in_transaction():
        session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    write_session(session)
    row = _row_for(session, provider_id, attempt_ref)
    if row is None:
        session.rollback()
        log.info("status callback for unknown message %s: ignored", provider_id)
        return None
    if row.provider_id != provider_id:
        # Our own attempt reached the provider after all: the dispatcher's "maybe" was a yes.
        settle_as_sent(row, provider_id=provider_id, channel=channel, now=now)
    if status_rank.get(status, 0) >= status_rank.get(row.delivery_status or "", 0):
        row.delivery_status = status
    if status in {"undelivered", "failed"} and error_code:
        row.last_error = f"{provider} delivery {status}: {error_code}"
    session.add(row)
    session.commit()
    session.refresh(row)
    log.info("notice %s delivery %s (%s)", row.id, row.delivery_status, mask_phone(row.to_phone))
    return row


def _row_for(session: Session, provider_id: str, attempt_ref: str) -> NoticeOutbox | None:
    row = notices.lock_notice_by_provider_id(session=session, provider_id=provider_id)
    if row is not None:
        return row
    notice_id, _, token = attempt_ref.partition(".")
    if not notice_id.isdigit() or not token:
        return None
    row = notices.lock_notice(session=session, notice_id=int(notice_id))
    if row is None or row.provider_id != attempt_marker(token):
        return None
    return row
