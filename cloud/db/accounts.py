"""Operator accounts and the sites each is bound to."""

from __future__ import annotations

from sqlmodel import Session, col, select

from cloud.db.models import Account, AccountSite


def account_by_username(*, session: Session, username: str) -> Account | None:
    """Return the account signed in as `username`."""
    return session.exec(select(Account).where(Account.username == username)).first()


def account_site_ids(*, session: Session, account_id: str) -> list[str]:
    """Return the sites an account is bound to, sorted."""
    statement = select(AccountSite.site_id).where(AccountSite.account_id == account_id)
    return sorted(session.exec(statement))


def unbind_account_sites(*, session: Session, account_id: str) -> None:
    """Delete an account's site bindings (in the caller's transaction; flushed)."""
    for link in session.exec(select(AccountSite).where(AccountSite.account_id == account_id)):
        session.delete(link)
    session.flush()


def all_accounts(*, session: Session) -> list[tuple[Account, tuple[str, ...]]]:
    """Return every account with its sites (sorted), by username."""
    accounts = session.exec(select(Account).order_by(col(Account.username))).all()
    sites: dict[str, list[str]] = {}
    for link in session.exec(select(AccountSite).order_by(col(AccountSite.site_id))):
        sites.setdefault(link.account_id, []).append(link.site_id)
    return [(account, tuple(sites.get(account.id, ()))) for account in accounts]
