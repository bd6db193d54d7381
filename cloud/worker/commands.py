"""The command outbox dispatcher: publish each command, resend it until acked or expired.

Every command to a cabinet is a `command_outbox` row, written in the transaction of the change that
caused it. `CommandDispatcher.tick(now)` publishes the rows that are due: never sent, or sent
`resend_interval_s` ago without an ack (a new parcel's `codes.put` is written sent and published by
the ingest loop, `cloud.services.deposit_batch`: here it is only ever resent). The due query reads a
partial index of the commands still in play (`ix_command_outbox_due`), so its cost is what is
unacked, not what the outbox ever held. Any number of workers may tick at once: a row is claimed
with a conditional `UPDATE` (the one whose update hits the row publishes; first sends are claimed
many to one `UPDATE ... RETURNING`), so each send happens once. The claim is committed before the
publish, so a crash in between costs one resend interval, never a lost command. A row whose
`expires_at` passed unacked is marked expired (`ack_ok` false, `ack_error` saying so) and never sent
again: the cabinet would drop it anyway. A `codes.put` superseded by a later `codes.revoke` or
`codes.put` of its parcel (`superseded_by`, set where the later one is queued:
`cloud.db.commands.supersede_codes_puts`) is never sent again either, so a resend cannot reach
the cabinet after the command that undid it. The queries are `cloud.db.commands`'s.
`record_acks` stores the cabinets' answers, a batch of them in one transaction (a superseded
command the cabinet got anyway is acked like any other).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session

from cloud import metrics
from cloud.db import cabinets, commands, reservations
from cloud.db.commands import resend_now as resend_now  # the presence tracker's (issue 12 §2)
from cloud.db.engine import write_session
from cloud.db.models import CommandOutbox
from protocol.codec import decode_command, encode
from protocol.errors import MessageError
from protocol.messages import Ack
from protocol.topics import cmd_topic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], object]

DEFAULT_RESEND_INTERVAL_S = 30.0
# Rows looked at per tick: bounds one tick's work; the rest is due at the next.
TICK_BATCH = 500
EXPIRED_ERROR = "expired before the cabinet acked it"


@dataclass(frozen=True)
class TickResult:
    """What one tick did."""

    sent: int  # commands published (first sends and resends)
    resent: int  # of those, resends
    expired: int  # commands marked expired


class CommandDispatcher:
    """Publishes due outbox rows on the cabinets' `cmd` topics and records their acks."""

    def __init__(
        self,
        *,
        engine: Engine,
        publish: Publish,
        resend_interval_s: float = DEFAULT_RESEND_INTERVAL_S,
        batch: int = TICK_BATCH,
        burst: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.burst = burst  # a block whose publishes go out together (`MqttClient.burst`)
        self.resend_interval = timedelta(seconds=resend_interval_s)
        self.batch = batch

    def tick(self, now: datetime) -> TickResult:
        """Mark expired rows, then publish every row that is due at `now`."""
        expired = self._expire(now)
        resend_before = now - self.resend_interval
        with Session(self.engine) as session:
            due = commands.due_commands(
                session=session, now=now, resend_before=resend_before, limit=self.batch
            )
            session.expunge_all()
        envelopes = {row.id: self._envelope(row, now) for row in due}
        # First sends are claimed together (one UPDATE, one commit): after a burst of deposits
        # that is hundreds of rows; resends, rare, one by one (each checks its own send_count).
        fresh = self._claim_fresh(
            [row.id for row in due if row.sent_at is None and envelopes[row.id] is not None], now
        )
        sent = resent = 0
        with self.burst():
            for row in due:
                envelope = envelopes[row.id]
                if envelope is None:
                    continue
                if row.sent_at is None:
                    if row.id not in fresh:
                        continue  # another worker claimed it, or it was acked meanwhile
                elif not self._claim(row, now, resend_before):
                    continue
                self.publish(cmd_topic(row.cabinet_id), envelope)
                sent += 1
                resent += row.sent_at is not None
        metrics.COMMANDS_SENT.labels(kind="first").inc(sent - resent)
        metrics.COMMANDS_SENT.labels(kind="resend").inc(resent)
        metrics.COMMANDS_EXPIRED.inc(expired)
        if sent or expired:
            log.info("commands: %d sent (%d resent), %d expired", sent, resent, expired)
        return TickResult(sent=sent, resent=resent, expired=expired)

    def record_ack(self, *, cab: str, ack: Ack, now: datetime) -> bool:
        """Record cabinet `cab`'s ack of a command; return False if it acks nothing we sent it."""
        return bool(self.record_acks(acks=[(cab, ack)], now=now))

    def record_acks(self, *, acks: Sequence[tuple[str, Ack]], now: datetime) -> int:
        """Record (cabinet, ack) pairs in one transaction; return how many acked a command.

        The successful ones (nearly all) in one UPDATE; a refusal, which carries its own error,
        in one of its own. An ack of an unknown or already acked command changes nothing.
        """
        with Session(self.engine) as session:
            write_session(session)
            recorded = commands.record_ok_acks(
                session=session, acks=[(ack.cmd, cab) for cab, ack in acks if ack.ok], now=now
            )
            for cab, ack in acks:
                if ack.ok:
                    continue
                if commands.record_refusal(
                    session=session, cab=cab, command_id=ack.cmd, error=ack.error, now=now
                ):
                    recorded.add((ack.cmd, cab))
                    log.warning("cabinet %s refused command %s: %s", cab, ack.cmd, ack.error)
                    if reservations.end_refused(session=session, command_id=ack.cmd, now=now):
                        log.warning("cabinet %s holds no door for it: reservation ended", cab)
            # An ack is the cabinet talking: its "last seen" moves (one UPDATE for the batch).
            cabinets.mark_seen(session=session, cabs=[cab for cab, _ in acks], at=now)
            session.commit()
        for cab, ack in acks:
            if (ack.cmd, cab) not in recorded:
                log.info(
                    "cabinet %s acked command %r, which is unknown or acked already", cab, ack.cmd
                )
        return len(recorded)

    def _expire(self, now: datetime) -> int:
        with Session(self.engine) as session:
            write_session(session)
            expired = commands.expire_commands(session=session, now=now, error=EXPIRED_ERROR)
            session.commit()
        return expired

    def _claim_fresh(self, ids: Sequence[str], now: datetime) -> set[str]:
        """Claim never-sent rows in one UPDATE; return the ids this worker won."""
        if not ids:
            return set()
        with Session(self.engine) as session:
            write_session(session)
            claimed = commands.claim_fresh(session=session, ids=ids, now=now)
            session.commit()
        return claimed

    def _claim(self, row: CommandOutbox, now: datetime, resend_before: datetime) -> bool:
        # The same condition that made the row due, re-checked atomically: one claimer wins.
        with Session(self.engine) as session:
            write_session(session)
            won = commands.claim_resend(
                session=session,
                command_id=row.id,
                send_count=row.send_count,
                now=now,
                resend_before=resend_before,
            )
            session.commit()
        return won

    def _envelope(self, row: CommandOutbox, now: datetime) -> bytes | None:
        """Return the row as a validated command envelope, or None (and the row failed)."""
        fields = {
            "v": 1,
            "id": row.id,
            "cab": row.cabinet_id,
            "ts": _rfc3339(now),
            "expires_at": _rfc3339(row.expires_at),
            "type": row.type,
            "data": row.data,
        }
        try:
            return encode(decode_command(json.dumps(fields).encode(), cab=row.cabinet_id))
        except MessageError as err:
            # A row no cabinet could accept will not get better by resending it.
            log.error("command %s (%s) is off-contract, not sent: %s", row.id, row.type, err)
            self._fail(row.id, f"off-contract: {err}")
            return None

    def _fail(self, command_id: str, error: str) -> None:
        with Session(self.engine) as session:
            write_session(session)
            commands.fail_command(session=session, command_id=command_id, error=error)
            session.commit()


def _rfc3339(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
