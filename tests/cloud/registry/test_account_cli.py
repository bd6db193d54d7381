"""`locker cloud account add|list`: console accounts with roles bound to sites or a carrier.

The password never travels on the command line; only its argon2id hash is kept; every account
and every registry change through the CLI leaves an audit row naming the operator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from cloud.db.models import Account, AccountSite, AuditLog
from cloud.services.accounts import PASSWORD_MIN_CHARS, principal_of, verify_password
from locker.cli import app

PASSWORD = "correct horse battery staple"


def cli(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["cloud", *args], input=stdin, env={"COLUMNS": "200"})


def _registry(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    for site in ("s1", "s2"):
        assert cli("site", "add", site, "--name", site, "--database-url", url).exit_code == 0
    assert cli("carrier", "add", "SF", "--database-url", url).exit_code == 0
    return url


def test_accounts_of_each_role_are_bound_hashed_listed_and_audited(tmp_path: Path) -> None:
    url = _registry(tmp_path)
    db = ("--database-url", url)
    made = [
        cli("account", "add", "root", "--role", "operator_admin", "--password-stdin", *db,
            stdin=PASSWORD + "\n"),
        cli("account", "add", "mgr", "--role", "site_manager", "--site", "s1", "--site", "s2",
            "--password-stdin", *db, stdin=PASSWORD + "\n"),
        # Prompted, hidden, asked twice.
        cli("account", "add", "sf-desk", "--role", "carrier", "--carrier", "SF", *db,
            stdin=f"{PASSWORD}\n{PASSWORD}\n"),
    ]  # fmt: skip
    for result in made:
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output
    assert "account mgr added: site_manager for site(s) s1, s2" in made[1].output

    listed = cli("account", "list", *db)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == [
        "mgr\tsite_manager\ts1,s2\tenabled",
        "root\toperator_admin\t-\tenabled",
        "sf-desk\tcarrier\tSF\tenabled",
    ]

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            accounts = {a.username: a for a in session.exec(select(Account))}
            for account in accounts.values():
                assert account.password_hash.startswith("$argon2id$")
                assert PASSWORD not in account.password_hash
                assert verify_password(PASSWORD, account.password_hash)
                assert not verify_password(PASSWORD + "x", account.password_hash)
            manager = principal_of(session=session, account=accounts["mgr"])
            assert manager.site_ids == {"s1", "s2"} and manager.kind == "site_manager"
            assert principal_of(session=session, account=accounts["sf-desk"]).carrier_id == "SF"
            audit = session.exec(select(AuditLog).order_by(AuditLog.id)).all()
        acts = [(a.action, a.resource_kind, a.detail.get("op")) for a in audit]
        assert acts == [
            ("manage_registry", "site", "add"),
            ("manage_registry", "site", "add"),
            ("manage_registry", "system", "add carrier"),
            ("manage_accounts", "account", "add"),
            ("manage_accounts", "account", "add"),
            ("manage_accounts", "account", "add"),
        ]
        assert all(a.principal_kind == "operator_admin" for a in audit)
        assert all(a.principal_id.startswith("cli:") for a in audit)
        assert audit[4].detail["site_ids"] == ["s1", "s2"]
    finally:
        engine.dispose()


def test_the_password_is_not_an_option() -> None:
    """A password on the command line is in `ps` and the shell history: there is no option."""
    result = cli("account", "add", "x", "--role", "operator_admin", "--password", PASSWORD)
    assert result.exit_code == 2
    assert "No such option" in result.output


def test_bad_accounts_are_refused_with_the_reason_and_nothing_written(tmp_path: Path) -> None:
    url = _registry(tmp_path)
    good = "p" * PASSWORD_MIN_CHARS
    cases = {
        "the role must be one of": ["--role", "superuser"],
        "a site manager needs at least one site": ["--role", "site_manager"],
        "is not bound to sites": ["--role", "operator_admin", "--site", "s1"],
        "a carrier account names its carrier": ["--role", "carrier"],
        "no carrier 'DHL'": ["--role", "carrier", "--carrier", "DHL"],
        "no site 'nowhere'": ["--role", "site_manager", "--site", "nowhere"],
    }
    for message, args in cases.items():
        result = cli(
            "account", "add", "someone", *args, "--password-stdin", "--database-url", url,
            stdin=good + "\n",
        )  # fmt: skip
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    short = cli(
        "account", "add", "someone", "--role", "operator_admin", "--password-stdin",
        "--database-url", url, stdin="p" * (PASSWORD_MIN_CHARS - 1) + "\n",
    )  # fmt: skip
    assert short.exit_code == 2 and f"{PASSWORD_MIN_CHARS}-" in short.output
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            assert session.exec(select(Account)).all() == []
            assert session.exec(select(AccountSite)).all() == []
            assert all(a.action != "manage_accounts" for a in session.exec(select(AuditLog)))
    finally:
        engine.dispose()


def test_a_role_change_and_a_disable_replace_the_binding_and_are_audited_with_before_and_after(
    tmp_path: Path,
) -> None:
    url = _registry(tmp_path)
    db = ("--database-url", url)
    made = cli(
        "account", "add", "mgr", "--role", "site_manager", "--site", "s1", "--password-stdin",
        *db, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    moved = cli(
        "account", "set-role", "mgr", "--role", "site_manager", "--site", "s2",
        "--reason", "moved to the campus", *db,
    )  # fmt: skip
    assert moved.exit_code == 0, moved.output
    assert "account mgr is now site_manager (s2)" in moved.output
    off = cli("account", "disable", "mgr", "--reason", "left the company", *db)
    assert off.exit_code == 0, off.output
    bad = cli("account", "set-role", "mgr", "--role", "carrier", "--reason", "x", *db)
    assert bad.exit_code == 2 and "names its carrier" in bad.output
    unknown = cli("account", "disable", "nobody", "--reason", "x", *db)
    assert unknown.exit_code == 2 and "no account 'nobody'" in unknown.output
    assert cli("account", "list", *db).output.splitlines() == ["mgr\tsite_manager\ts2\tdisabled"]

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            account = session.exec(select(Account)).one()
            with pytest.raises(ValueError, match="disabled"):
                principal_of(session=session, account=account)  # a disabled account acts as no one
            changes = [
                a
                for a in session.exec(select(AuditLog).order_by(AuditLog.id))
                if a.detail.get("op") == "change"
            ]
        assert [(c.reason, c.detail["before"], c.detail["after"]) for c in changes] == [
            (
                "moved to the campus",
                {"role": "site_manager", "site_ids": ["s1"], "carrier_id": None, "disabled": False},
                {"role": "site_manager", "site_ids": ["s2"], "carrier_id": None, "disabled": False},
            ),
            (
                "left the company",
                {"role": "site_manager", "site_ids": ["s2"], "carrier_id": None, "disabled": False},
                {"role": "site_manager", "site_ids": ["s2"], "carrier_id": None, "disabled": True},
            ),
        ]
    finally:
        engine.dispose()


def test_account_totp_prints_a_uri_whose_codes_the_console_accepts(tmp_path: Path) -> None:
    """`locker cloud account totp` seals a new secret and prints its provisioning URI (and QR):
    the secret in the URI is the one the console checks codes against."""
    import secrets

    import pyotp

    from cloud.db import sealing
    from cloud.services.console_auth import TOTP_CONTEXT

    url = _registry(tmp_path)
    key = secrets.token_hex(32)
    env = {"COLUMNS": "200", "LOCKER_CLOUD_SECRET_KEY": key}
    made = CliRunner().invoke(
        app, ["cloud", "account", "add", "root", "--role", "operator_admin", "--password-stdin",
              "--database-url", url], input=PASSWORD + "\n", env=env,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    result = CliRunner().invoke(
        app, ["cloud", "account", "totp", "root", "--database-url", url], env=env
    )
    assert result.exit_code == 0, result.output
    uri = next(line for line in result.output.splitlines() if line.startswith("otpauth://"))
    assert "root" in uri and "issuer=Parcel%20lockers" in uri
    secret = pyotp.parse_uri(uri).secret
    with Session(make_engine(url)) as session:
        account = session.exec(select(Account).where(Account.username == "root")).one()
        assert secret not in account.totp_secret_sealed
        kept = sealing.unseal(key.encode(), account.totp_secret_sealed, context=TOTP_CONTEXT)
        ops = [r.detail.get("op") for r in session.exec(select(AuditLog))]
    assert kept == secret and "totp" in ops
    missing = CliRunner().invoke(
        app, ["cloud", "account", "totp", "nobody", "--database-url", url], env=env
    )
    assert missing.exit_code == 2 and "no account 'nobody'" in missing.output
