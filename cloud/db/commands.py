"""The command outbox: queue a command, supersede older puts, claim, expire and ack commands.

"A command still in play" (not acked, not failed, not superseded) is `IN_PLAY`, written once here;
`models.COMMANDS_IN_PLAY` is the same rule as the SQL text of the partial index that serves it
(tests/cloud/db/test_command_queries.py holds the two equal).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import Session, col, select

from cloud.db import bulk
from cloud.db.models import CommandOutbox
from cloud.db.rows import new_id

# A command still in play: the cabinet may still act on it, so it is due, resent and claimable.
IN_PLAY = and_(
    col(CommandOutbox.acked_at).is_(None),
    col(CommandOutbox.ack_error).is_(None),
    col(CommandOutbox.superseded_by).is_(None),
)

# A command the cabinet has not acked by then is dropped by it and no longer resent by us: a week
# covers any realistic outage, and a stale codes.put is harmless (the code's own expiry rules).
COMMAND_TTL_S = 7 * 24 * 3600


def enqueue_command(
    *,
    session: Session,
    cab: str,
    type: str,
    data: Any,
    now: datetime,
    parcel_id: str | None = None,
) -> CommandOutbox:
    """Queue a command to a cabinet; `data` is the protocol's data model for `type`.

    `parcel_id` names the one parcel a `codes.put` is about, so a newer command can supersede it.
    """
    row = CommandOutbox(
        **command_values(cab=cab, type=type, data=data, now=now, parcel_id=parcel_id)
    )
    session.add(row)
    return row


def command_values(
    *, cab: str, type: str, data: Any, now: datetime, parcel_id: str | None = None
) -> dict[str, Any]:
    """Return a new `command_outbox` row's columns (but its defaults), with a fresh id."""
    return {
        "id": new_id(),
        "cabinet_id": cab,
        "type": type,
        "data": data.model_dump(mode="json"),
        "created_at": now,
        "expires_at": now + timedelta(seconds=COMMAND_TTL_S),
        "parcel_id": parcel_id,
    }


def supersede_codes_puts(
    *, session: Session, command: CommandOutbox, parcel_ids: Sequence[str]
) -> int:
    """Retire the older unacked `codes.put` of these parcels: `command` replaces or revokes them.

    Called in the transaction that queued `command`. A retired put is never sent again: resent
    after the revoke, it would give a taken, expired or cancelled parcel its code back, and
    resent after a newer put (a reissued code), it would put the old code back. Return how many.
    """
    if not parcel_ids:
        return 0
    session.flush()  # puts queued earlier in this transaction must be rows the UPDATE can see
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.cabinet_id) == command.cabinet_id,
            col(CommandOutbox.parcel_id).in_(list(parcel_ids)),
            col(CommandOutbox.type) == "codes.put",
            col(CommandOutbox.id) != command.id,
            IN_PLAY,
        )
        .values(superseded_by=command.id)
    )
    return result.rowcount


def superseded_among(*, session: Session, ids: Sequence[str]) -> set[str]:
    """Return which of the commands `ids` a later command has superseded."""
    if not ids:
        return set()
    statement = select(CommandOutbox.id).where(
        col(CommandOutbox.id).in_(list(ids)), col(CommandOutbox.superseded_by).is_not(None)
    )
    return set(session.exec(statement))


def due_commands(
    *, session: Session, now: datetime, resend_before: datetime, limit: int
) -> list[CommandOutbox]:
    """Return the commands due at `now`: in play, not expired, never sent or sent before
    `resend_before`; oldest first, at most `limit` (it reads the partial index
    `ix_command_outbox_due`)."""
    statement = (
        select(CommandOutbox)
        .where(
            IN_PLAY,
            CommandOutbox.expires_at > now,
            or_(
                col(CommandOutbox.sent_at).is_(None),
                col(CommandOutbox.sent_at) <= resend_before,
            ),
        )
        .order_by(col(CommandOutbox.created_at), col(CommandOutbox.id))
        .limit(limit)
    )
    return list(session.exec(statement).all())


def expire_commands(*, session: Session, now: datetime, error: str) -> int:
    """Mark the commands in play whose `expires_at` passed failed with `error`; count them."""
    result = session.connection().execute(
        update(CommandOutbox)
        .where(IN_PLAY, CommandOutbox.expires_at <= now)
        .values(ack_ok=False, ack_error=error)
    )
    return result.rowcount


def claim_fresh(*, session: Session, ids: Sequence[str], now: datetime) -> set[str]:
    """Claim never-sent commands in play among `ids` in one UPDATE; return the ids claimed."""
    if not ids:
        return set()
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.id).in_(list(ids)),
            IN_PLAY,  # undone since it was read
            col(CommandOutbox.sent_at).is_(None),
        )
        .values(sent_at=now, send_count=CommandOutbox.send_count + 1)
        .returning(col(CommandOutbox.id))
    )
    return {row[0] for row in result}


def claim_resend(
    *, session: Session, command_id: str, send_count: int, now: datetime, resend_before: datetime
) -> bool:
    """Claim a command for a resend if it is still due as read (`send_count` unchanged)."""
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.id) == command_id,
            IN_PLAY,
            or_(
                col(CommandOutbox.sent_at).is_(None),
                and_(
                    col(CommandOutbox.sent_at) <= resend_before,
                    col(CommandOutbox.send_count) == send_count,
                ),
            ),
        )
        .values(sent_at=now, send_count=CommandOutbox.send_count + 1)
    )
    return result.rowcount == 1


def record_ok_acks(
    *, session: Session, acks: Iterable[tuple[str, str]], now: datetime
) -> set[tuple[str, str]]:
    """Mark (command id, cabinet) pairs acked ok in one statement; return the pairs it changed
    (an unknown or already acked command is not among them)."""
    changed = bulk.update_rows(
        session.connection(),
        CommandOutbox.__table__,
        [
            {"id": cmd, "cabinet_id": cab, "acked_at": now, "ack_ok": True, "ack_error": None}
            for cmd, cab in sorted(set(acks))
        ],
        key=("id", "cabinet_id"),
        only_if_null=("acked_at",),
        returning=("id", "cabinet_id"),
    )
    return {(row[0], row[1]) for row in changed}


def record_refusal(
    *, session: Session, cab: str, command_id: str, error: str | None, now: datetime
) -> bool:
    """Mark cabinet `cab`'s command acked as refused with `error`; whether it was unacked."""
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.id) == command_id,
            col(CommandOutbox.cabinet_id) == cab,
            col(CommandOutbox.acked_at).is_(None),
        )
        .values(acked_at=now, ack_ok=False, ack_error=error)
    )
    return result.rowcount == 1


def fail_command(*, session: Session, command_id: str, error: str) -> None:
    """Mark an unacked command failed with `error` (it will not be sent again)."""
    session.connection().execute(
        update(CommandOutbox)
        .where(col(CommandOutbox.id) == command_id, col(CommandOutbox.acked_at).is_(None))
        .values(ack_ok=False, ack_error=error[:1024])
    )


def resend_now(*, session: Session, cab: str) -> int:
    """Make cabinet `cab`'s sent commands in play due at once, in the caller's transaction.

    For a cabinet that just reconnected: whatever was published while it was away may be lost
    (a clean session keeps nothing), and waiting out the resend interval would only delay it.
    """
    result = session.connection().execute(
        update(CommandOutbox)
        .where(
            col(CommandOutbox.cabinet_id) == cab,
            IN_PLAY,
            col(CommandOutbox.sent_at).is_not(None),
        )
        .values(sent_at=None)
    )
    return result.rowcount


def unclaim_commands(*, session: Session, ids: Iterable[str]) -> None:
    """Mark commands never sent (a claim that was not published after all)."""
    bulk.update_rows(
        session.connection(),
        CommandOutbox.__table__,
        [{"id": command_id, "sent_at": None, "send_count": 0} for command_id in ids],
        key=("id",),
    )
