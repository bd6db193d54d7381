"""Console accounts: operator admins, site managers bound to sites, carriers bound to a carrier.

Passwords are kept as argon2id hashes (pwdlib's recommended settings); the clear password is
never stored nor logged. Every account change writes an audit row in its own transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pwdlib import PasswordHash
from sqlmodel import Session
from ulid import ULID

from cloud.core.access import (
    ACCOUNT_ROLES,
    Action,
    AuditEntry,
    Principal,
    PrincipalKind,
    ResourceKind,
)
from cloud.core.phones import mask_phone, normalize_phone
from cloud.db import accounts
from cloud.db.engine import write_session
from cloud.db.models import Account, AccountSite, Carrier, Site
from cloud.services import audit
from cloud.services.registry import RegistryError

_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{3,120}$")
# Long enough that an online guesser gets nowhere with the console's rate limits; the
# console's own limits come later (docs/who-may-do-what.md).
PASSWORD_MIN_CHARS = 12
PASSWORD_MAX_CHARS = 1024  # argon2 takes any length: this only stops a DoS by a huge body

_hasher = PasswordHash.recommended()


@dataclass(frozen=True)
class AccountView:
    """An account as `account list` shows it: no password hash."""

    id: str
    username: str
    role: str
    carrier_id: str | None
    site_ids: tuple[str, ...]
    disabled: bool
    created_at: datetime


def _role(role: str) -> PrincipalKind:
    try:
        kind = PrincipalKind(role)
    except ValueError:
        kind = None
    if kind not in ACCOUNT_ROLES:
        raise RegistryError(f"the role must be one of {', '.join(ACCOUNT_ROLES)}, not {role!r}")
    assert kind is not None
    return kind


def _binding(kind: PrincipalKind, site_ids: Sequence[str], carrier_id: str | None) -> list[str]:
    """Return the sorted sites of a role's binding; RegistryError for a binding it cannot have."""
    sites = sorted(set(site_ids))
    if kind is PrincipalKind.SITE_MANAGER and not sites:
        raise RegistryError("a site manager needs at least one site (--site)")
    if kind is not PrincipalKind.SITE_MANAGER and sites:
        raise RegistryError(f"a {kind} account is not bound to sites: drop --site")
    if (kind is PrincipalKind.CARRIER) != (carrier_id is not None):
        raise RegistryError(
            "a carrier account names its carrier (--carrier); other roles name none"
        )
    return sites


def _check_binding_exists(session: Session, sites: Sequence[str], carrier_id: str | None) -> None:
    if carrier_id is not None and session.get(Carrier, carrier_id) is None:
        raise RegistryError(f"no carrier {carrier_id!r}")
    for site_id in sites:
        if session.get(Site, site_id) is None:
            raise RegistryError(f"no site {site_id!r}")


def hasher() -> PasswordHash:
    """The password hasher (tests swap in a cheaper argon2id with `use_hasher`)."""
    return _hasher


def use_hasher(new: PasswordHash) -> PasswordHash:
    """Hash and verify with `new` from now on; return the one it replaces."""
    global _hasher
    old, _hasher = _hasher, new
    return old


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _hasher.verify(password, password_hash)


def add_account(
    *,
    session: Session,
    username: str,
    role: str,
    password: str,
    now: datetime,
    site_ids: Sequence[str] = (),
    carrier_id: str | None = None,
    actor: Principal | None = None,
    phone: str | None = None,
) -> AccountView:
    """Add a console account and commit (with its audit row); return it.

    `phone` (any common form, kept as E.164) is where a site manager is told of new critical
    alarms (`cloud.services.alarms`).

    A site manager names at least one site and no carrier; a carrier account names its
    carrier and no site; an operator admin names neither. RegistryError (nothing written) for
    anything else.
    """
    if not _USERNAME.match(username):
        raise RegistryError("the username must be 3-120 of A-Z a-z 0-9 _ . @ -")
    kind = _role(role)
    if not PASSWORD_MIN_CHARS <= len(password) <= PASSWORD_MAX_CHARS:
        raise RegistryError(
            f"the password must be {PASSWORD_MIN_CHARS}-{PASSWORD_MAX_CHARS} characters"
        )
    sites = _binding(kind, site_ids, carrier_id)
    if phone is not None:
        try:
            phone = normalize_phone(phone)
        except ValueError as err:
            raise RegistryError(f"the phone: {err}") from None
    password_hash = hash_password(password)  # slow on purpose: before the write transaction
    account_id = str(ULID())
    write_session(session)
    try:
        if accounts.account_by_username(session=session, username=username) is not None:
            raise RegistryError(f"account {username!r} exists already")
        _check_binding_exists(session, sites, carrier_id)
        account = Account(
            id=account_id,
            username=username,
            role=kind.value,
            password_hash=password_hash,
            carrier_id=carrier_id,
            phone=phone,
            created_at=now,
        )
        session.add(account)
        session.flush()
        session.add_all(AccountSite(account_id=account_id, site_id=s) for s in sites)
        who = actor or audit.cli_principal()
        entry = AuditEntry(
            who.kind,
            who.id,
            Action.MANAGE_ACCOUNTS,
            ResourceKind.ACCOUNT,
            account_id,
            detail={
                "op": "add",
                "username": username,
                "role": kind.value,
                "site_ids": sites,
                "carrier_id": carrier_id,
                "phone": mask_phone(phone) if phone else None,
            },
        )
        audit.record(session=session, entry=entry, now=now)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return AccountView(account_id, username, kind.value, carrier_id, tuple(sites), False, now)


def change_account(
    *,
    session: Session,
    username: str,
    now: datetime,
    role: str | None = None,
    site_ids: Sequence[str] | None = None,
    carrier_id: str | None = None,
    disabled: bool | None = None,
    reason: str = "",
    actor: Principal | None = None,
) -> AccountView:
    """Change an account's role and binding (given together) and/or disable or enable it;
    commit with an audit row saying what it was and what it became.

    `role` None keeps the role and binding. RegistryError (nothing written) for an unknown
    account or a binding the role cannot have.
    """
    write_session(session)
    try:
        account = accounts.account_by_username(session=session, username=username)
        if account is None:
            raise RegistryError(f"no account {username!r}")
        old_sites = accounts.account_site_ids(session=session, account_id=account.id)
        before = {
            "role": account.role,
            "site_ids": old_sites,
            "carrier_id": account.carrier_id,
            "disabled": account.disabled,
        }
        sites = old_sites
        if role is not None:
            kind = _role(role)
            sites = _binding(kind, site_ids or (), carrier_id)
            _check_binding_exists(session, sites, carrier_id)
            account.role, account.carrier_id = kind.value, carrier_id
            accounts.unbind_account_sites(session=session, account_id=account.id)
            session.add_all(AccountSite(account_id=account.id, site_id=s) for s in sites)
        if disabled is not None:
            account.disabled = disabled
        session.add(account)
        after = {
            "role": account.role,
            "site_ids": sites,
            "carrier_id": account.carrier_id,
            "disabled": account.disabled,
        }
        who = actor or audit.cli_principal()
        entry = AuditEntry(
            who.kind,
            who.id,
            Action.MANAGE_ACCOUNTS,
            ResourceKind.ACCOUNT,
            account.id,
            reason=reason,
            detail={"op": "change", "username": username, "before": before, "after": after},
        )
        audit.record(session=session, entry=entry, now=now)
        view = AccountView(
            account.id,
            account.username,
            account.role,
            account.carrier_id,
            tuple(sites),
            account.disabled,
            account.created_at,
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return view


def list_accounts(*, session: Session) -> list[AccountView]:
    """Return every account, by username."""
    return [
        AccountView(a.id, a.username, a.role, a.carrier_id, sites, a.disabled, a.created_at)
        for a, sites in accounts.all_accounts(session=session)
    ]


def principal_of(*, session: Session, account: Account) -> Principal:
    """Return the principal a signed-in account acts as; ValueError for a disabled one."""
    if account.disabled:
        raise ValueError(f"account {account.username!r} is disabled")
    site_ids = frozenset(accounts.account_site_ids(session=session, account_id=account.id))
    return Principal(
        PrincipalKind(account.role), account.id, site_ids=site_ids, carrier_id=account.carrier_id
    )
