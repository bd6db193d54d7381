"""The console's sessions and failed sign-ins: the SQL of cloud.services.console_auth."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from cloud.db.console_models import ConsoleSession, SignInFailure


def session_by_hash(*, session: Session, token_hash: str) -> ConsoleSession | None:
    return session.get(ConsoleSession, token_hash)


def delete_session(*, session: Session, token_hash: str) -> None:
    session.execute(delete(ConsoleSession).where(col(ConsoleSession.token_hash) == token_hash))


def delete_dead_sessions(*, session: Session, now: datetime, idle_before: datetime) -> int:
    """Delete the sessions that ended (absolute or idle); return how many."""
    result = session.execute(
        delete(ConsoleSession).where(
            (col(ConsoleSession.expires_at) <= now)
            | (col(ConsoleSession.last_used_at) <= idle_before)
        )
    )
    return result.rowcount or 0


def failures_since(
    *, session: Session, since: datetime, username: str, address: str
) -> tuple[list[datetime], list[datetime]]:
    """Return the times of the failures after `since` of `username`, and of `address`."""
    statement = select(SignInFailure.at, SignInFailure.username, SignInFailure.address).where(
        col(SignInFailure.at) > since,
        (col(SignInFailure.username) == username) | (col(SignInFailure.address) == address),
    )
    by_user, by_address = [], []
    for at, user, addr in session.exec(statement):
        if user == username:
            by_user.append(at)
        if addr == address:
            by_address.append(at)
    return by_user, by_address


def delete_old_failures(*, session: Session, before: datetime) -> int:
    result = session.execute(delete(SignInFailure).where(col(SignInFailure.at) < before))
    return result.rowcount or 0
