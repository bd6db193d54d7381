"""Console sign-in: password (argon2) and optional TOTP, lockout, server-side sessions.

`sign_in` checks the lock first (cloud.core.lockout: per account and per address), then the
password and, for an account with a second factor, the TOTP code; a failure is a row and an
audit entry, a success a new session whose token goes in the cookie and whose SHA-256 is the
row's key. `session_user` turns a cookie back into the account's principal, refusing a session
past its absolute end or idle timeout. Every time comes from the caller's clock.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
from sqlmodel import Session

from cloud import errors
from cloud.core import lockout
from cloud.core.access import Action, AuditEntry, Principal, PrincipalKind, ResourceKind
from cloud.db import accounts, console_sessions, sealing
from cloud.db.console_models import ConsoleSession, SignInFailure
from cloud.db.engine import write_session
from cloud.db.models import Account
from cloud.services import accounts as account_service
from cloud.services import audit
from cloud.services.accounts import principal_of, verify_password

TOTP_CONTEXT = "account-totp"
# What the audit log calls the console's own acts on sign-in (not policy actions: nobody asks
# permission to sign in).
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_IN_LOCKED = "sign_in_locked"
SIGN_OUT = "sign_out"


class SignInRefused(errors.Unauthenticated):
    """A wrong username, password or TOTP code (the same words for each: no oracle)."""


class SignInLocked(errors.RateLimited):
    """Too many failures for the account or the address; `retry_after_s` says for how long."""


@dataclass(frozen=True)
class SignedIn:
    """A new session: the cookie's token (shown once, never stored) and its CSRF token."""

    token: str
    csrf_token: str
    principal: Principal


@dataclass(frozen=True)
class ConsoleUser:
    """Who a console request comes from: the account, its principal, its session's CSRF token."""

    principal: Principal
    username: str
    role: str
    csrf_token: str
    token_hash: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _record_failure(
    session: Session, *, username: str, address: str, now: datetime, what: str, why: str
) -> None:
    session.add(SignInFailure(at=now, username=username[:120], address=address[:64]))
    entry = AuditEntry(
        PrincipalKind.ANYONE,
        f"address:{address}",
        what,
        ResourceKind.ACCOUNT,
        username[:120],
        outcome="refused",
        detail={"why": why, "address": address},
    )
    audit.record(session=session, entry=entry, now=now)


def sign_in(
    *,
    session: Session,
    username: str,
    password: str,
    totp_code: str,
    address: str,
    now: datetime,
    secret_key: bytes,
) -> SignedIn:
    """Check the credentials and open a session; commit. Raise SignInLocked or SignInRefused
    (having recorded the failure, unless locked)."""
    by_user, by_address = _failures(session, username=username, address=address, now=now)
    ends = [
        lockout.locked_until(by_user, limit=lockout.ACCOUNT_LIMIT, now=now),
        lockout.locked_until(by_address, limit=lockout.ADDRESS_LIMIT, now=now),
    ]
    until = max((e for e in ends if e is not None), default=None)
    if until is not None:
        _audit_only(
            session, username=username, address=address, now=now, what=SIGN_IN_LOCKED, why="locked"
        )
        wait = max(1, int((until - now).total_seconds()) + 1)
        raise SignInLocked(
            "too many failed sign-ins: try again in a few minutes", retry_after_s=wait
        )
    account = accounts.account_by_username(session=session, username=username)
    why = _check(account, password=password, totp_code=totp_code, secret_key=secret_key, now=now)
    session.rollback()  # end the reads: the write transaction below begins fresh
    if why is not None or account is None:
        write_session(session)
        _record_failure(
            session, username=username, address=address, now=now, what=SIGN_IN_FAILED, why=why
        )
        session.commit()
        raise SignInRefused("wrong username, password or code")
    principal = principal_of(session=session, account=account)
    session.rollback()
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    write_session(session)
    session.add(
        ConsoleSession(
            token_hash=token_hash(token),
            account_id=account.id,
            csrf_token=csrf,
            created_at=now,
            last_used_at=now,
            expires_at=now + lockout.SESSION_LIFETIME,
        )
    )
    entry = AuditEntry(
        principal.kind, principal.id, SIGN_IN, ResourceKind.ACCOUNT, account.id,
        detail={"address": address},
    )  # fmt: skip
    audit.record(session=session, entry=entry, now=now)
    console_sessions.delete_dead_sessions(
        session=session, now=now, idle_before=now - lockout.IDLE_TIMEOUT
    )
    console_sessions.delete_old_failures(session=session, before=now - 4 * lockout.WINDOW)
    session.commit()
    return SignedIn(token=token, csrf_token=csrf, principal=principal)


def _failures(
    session: Session, *, username: str, address: str, now: datetime
) -> tuple[list[datetime], list[datetime]]:
    found = console_sessions.failures_since(
        session=session, since=now - lockout.WINDOW, username=username, address=address
    )
    session.rollback()
    return found


def _audit_only(
    session: Session, *, username: str, address: str, now: datetime, what: str, why: str
) -> None:
    write_session(session)
    entry = AuditEntry(
        PrincipalKind.ANYONE, f"address:{address}", what, ResourceKind.ACCOUNT, username[:120],
        outcome="refused", detail={"why": why, "address": address},
    )  # fmt: skip
    audit.record(session=session, entry=entry, now=now)
    session.commit()


def _check(
    account: Account | None, *, password: str, totp_code: str, secret_key: bytes, now: datetime
) -> str | None:
    """Return why the credentials fail (for the audit log, never for the page), None if good."""
    if account is None:
        # Hash anyway, so a missing account takes as long to refuse as a wrong password.
        verify_password(password, _dummy_hash())
        return "no such account"
    if not verify_password(password, account.password_hash):
        return "wrong password"
    if account.disabled:
        return "account disabled"
    if account.totp_secret_sealed is not None:
        secret = sealing.unseal(secret_key, account.totp_secret_sealed, context=TOTP_CONTEXT)
        code = totp_code.strip().replace(" ", "")
        # valid_window=1: the code of the 30 s step before or after, for a phone's clock drift.
        if not code or not pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1):
            return "wrong or missing TOTP code"
    return None


_dummy_hashes: dict[int, str] = {}


def _dummy_hash() -> str:
    """A hash of nothing, made with the accounts' hasher (and its cost) on first use."""
    hasher = account_service.hasher()
    if id(hasher) not in _dummy_hashes:
        _dummy_hashes[id(hasher)] = hasher.hash(secrets.token_urlsafe(16))
    return _dummy_hashes[id(hasher)]


def session_user(*, session: Session, token: str | None, now: datetime) -> ConsoleUser | None:
    """Return who the cookie's `token` signs in, or None (no, ended or unknown session, or a
    disabled account). Refreshes the session's last use at most once a minute."""
    if not token:
        return None
    hashed = token_hash(token)
    row = console_sessions.session_by_hash(session=session, token_hash=hashed)
    if row is None:
        session.rollback()
        return None
    times = lockout.SessionTimes(row.created_at, row.last_used_at, row.expires_at)
    account = session.get(Account, row.account_id)
    alive = lockout.session_alive(times, now) and account is not None and not account.disabled
    if not alive or account is None:
        session.rollback()
        return None
    principal = principal_of(session=session, account=account)
    user = ConsoleUser(principal, account.username, account.role, row.csrf_token, hashed)
    session.rollback()
    if lockout.needs_touch(times, now):
        write_session(session)
        fresh = console_sessions.session_by_hash(session=session, token_hash=hashed)
        if fresh is not None:
            fresh.last_used_at = now
            session.add(fresh)
        session.commit()
    return user


def sign_out(*, session: Session, user: ConsoleUser, now: datetime) -> None:
    """End the session and audit it; commit."""
    write_session(session)
    console_sessions.delete_session(session=session, token_hash=user.token_hash)
    entry = AuditEntry(
        user.principal.kind, user.principal.id, SIGN_OUT, ResourceKind.ACCOUNT, user.principal.id
    )
    audit.record(session=session, entry=entry, now=now)
    session.commit()


# --- TOTP enrolment (locker cloud account totp) ---------------------------------------------------

TOTP_ISSUER = "Parcel lockers"


def enrol_totp(
    *, session: Session, username: str, secret_key: bytes, now: datetime, actor: Principal
) -> str:
    """Give the account a new TOTP secret (sealed) and return its provisioning URI; commit."""
    secret = pyotp.random_base32()
    write_session(session)
    try:
        account = accounts.account_by_username(session=session, username=username)
        if account is None:
            raise errors.NotFound(f"no account {username!r}")
        account.totp_secret_sealed = sealing.seal(secret_key, secret, context=TOTP_CONTEXT)
        session.add(account)
        entry = AuditEntry(
            actor.kind, actor.id, Action.MANAGE_ACCOUNTS, ResourceKind.ACCOUNT, account.id,
            detail={"op": "totp", "username": username},
        )  # fmt: skip
        audit.record(session=session, entry=entry, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)
