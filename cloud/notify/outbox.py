"""The notice outbox row's states, and the moves between them that more than one module makes.

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

from cloud.db.models import NoticeOutbox
from cloud.db.notices import FAILED as FAILED
from cloud.db.notices import QUEUED as QUEUED
from cloud.db.notices import SENDING as SENDING
from cloud.db.notices import SENT as SENT
from cloud.db.notices import UNKNOWN as UNKNOWN


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
