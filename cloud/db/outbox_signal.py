"""Wakes this process's webhook sender when one of its transactions commits a webhook outbox row.

The worker's webhook thread used to read the outbox every 0.2 s whatever happened, with no
endpoint at all: a sixth of the worker's time in `locker bench cloud`, whose deposits write no
webhook row. Now `write_effects` marks the session that adds a row, and the session's commit
notifies `WEBHOOK_ROWS_COMMITTED`, on which the thread waits. A row another process commits (the
API's) and a retry coming due are found by the thread's slow fallback poll
(`cloud.worker.service.WEBHOOKS_FALLBACK_S`).
"""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

_MARK = "webhook_outbox_rows"  # in Session.info: this transaction added a webhook outbox row


class CommitSignal:
    """A counter of commits that waiters can sleep on: `wait(seen, ...)` returns once the count
    is no longer `seen`, so several waiters each see every change (no one consumes it)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout_s: float) -> int:
        """Block until the count differs from `seen` or `timeout_s` passed; return the count."""
        with self._changed:
            self._changed.wait_for(lambda: self._generation != seen, timeout_s)
            return self._generation


WEBHOOK_ROWS_COMMITTED = CommitSignal()


def mark_webhook_row(session: Session) -> None:
    """Note that `session`'s transaction added a webhook outbox row: its commit will notify."""
    session.info[_MARK] = True


@event.listens_for(Session, "after_commit")
def _notify_after_commit(session: Session) -> None:
    if session.info.pop(_MARK, False):
        WEBHOOK_ROWS_COMMITTED.notify()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_MARK, None)
