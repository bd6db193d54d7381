"""Issue 11, part 2 (secrets and sessions), played by an attacker.

- The cloud started with a public default secret key: anyone could sign a scan-to-open session
  with it and open a door. Now the API and the worker refuse to start without a strong key, a
  public or weak one cannot be configured, and a session signed with any other key opens nothing.
- `cabinets.code_key` was stored in clear: with it and a stored hash, a leaked database gave every
  live code (10**8 HMACs, minutes). Now it is sealed under the secret key.
- The SQLite files of the cloud and the cabinet were created 0644: any local user could read
  them. Now they are 0600, with their -wal and -shm.
- Twilio status callbacks were verified against an empty token when none was set, so anyone
  could sign one. Now they are refused.
- Twilio's HTTP client logged every request at INFO in the worker's log: now held at WARNING.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import stat
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from cabinet.journal import Journal
from cloud.api import create_app
from cloud.db import repo
from cloud.db.engine import make_engine
from cloud.db.migrate import alembic_config, current_revision_of, head_revision, upgrade
from cloud.db.models import (
    Cabinet,
    CabinetCreate,
    CommandOutbox,
    Compartment,
    NoticeOutbox,
    Parcel,
    SiteCreate,
)
from cloud.db.sealing import SealError, is_sealed, unseal
from cloud.fakes.twilio_server import FakeTwilio
from cloud.logs import QUIET_LOGGERS, setup_logging
from cloud.notify.ports import OutgoingMessage
from cloud.notify.sms_twilio import TwilioSms
from cloud.services.ingest import apply_pending, store_events
from cloud.services.registry import CompartmentSpec, add_cabinet, add_site
from cloud.services.scan_open import make_token
from cloud.settings import (
    MAKE_SECRET_KEY,
    SECRET_KEY_ENV,
    CloudSettings,
    SettingsError,
    secret_key_problem,
)
from locker.cli import app
from protocol.hashing import code_hash
from tests.cloud import conftest as cloud_fixtures
from tests.cloud.api import conftest as api_fixtures
from tests.cloud.api.conftest import BASE_URL, NOW, Clock
from tests.cloud.db.builders import CAB, CODE_KEY, PHONE, SITE, T0, Recording, deposited
from tests.cloud.notify.conftest import CALLBACK_URL
from tests.deploy.tools import DEPLOY, debian, require_tool

# The key that shipped as the default until issue 11: public, in every clone of the repository.
PUBLIC_KEY = "insecure-demo-key-change-me-0123456789abcdef"
CALLBACK_PATH = "/api/v1/callbacks/twilio/status"

# The cloud tests' fixtures: each database test runs on SQLite and on PostgreSQL.
db_url = cloud_fixtures.db_url
engine = cloud_fixtures.engine
twilio = api_fixtures.twilio


def _no_secret_env() -> dict[str, str | None]:
    """CliRunner's env: every LOCKER_ variable of the outer shell removed, as a fresh host."""
    return {k: None for k in os.environ if k.startswith("LOCKER_")} | {"COLUMNS": "200"}


# --- the API and the worker refuse to start without a strong secret key ---------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["cloud", "serve", "--port", "1"],
        ["cloud", "worker", "--broker", "mqtt://127.0.0.1:1", "--client-id", "w-secret"],
    ],
    ids=["serve", "worker"],
)
def test_the_api_and_the_worker_refuse_to_start_without_a_secret_key(
    tmp_path: Path, command: list[str]
) -> None:
    """Finding: the cloud started silently with a public default secret key.

    A fresh host runs `locker cloud serve` / `worker` with no LOCKER_CLOUD_SECRET_KEY: each
    exits non-zero with one paragraph naming the setting and how to make one, no traceback.
    The database is left empty: the key is checked first, before the revision check that would
    otherwise answer (and a test of the old code fails instead of serving forever).
    """
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    result = CliRunner().invoke(app, [*command, "--database-url", url], env=_no_secret_env())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a crash
    assert "Traceback" not in result.output
    assert f"error: {SECRET_KEY_ENV} is not set" in result.output
    assert MAKE_SECRET_KEY in result.output
    assert len(result.output.strip().splitlines()) == 1  # one paragraph


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_another_secret_key_than_the_databases_is_refused_at_startup(
    tmp_path: Path, command: str
) -> None:
    """The key that sealed the code keys is the only one that works: a process given another
    (a typo, a lost key replaced) is stopped at startup, naming the setting, rather than
    failing at the first deposit.
    """
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        deposit_with(engine, seal_key=secrets.token_hex(32).encode())
    finally:
        engine.dispose()
    env = _no_secret_env() | {SECRET_KEY_ENV: secrets.token_hex(32)}
    with socket.socket() as taken:  # were the check gone, serve would fail to bind, not serve
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = {
            "serve": ["--port", str(taken.getsockname()[1])],
            "worker": ["--broker", "mqtt://127.0.0.1:1"],
        }
        args = ["cloud", command, "--database-url", url, *where[command]]
        result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"{SECRET_KEY_ENV} does not open the cabinets' code keys" in result.output


WEAK_KEYS = {
    "public default": PUBLIC_KEY,
    "short": "s3cret-s3cret-s3cret",
    "one letter": "a" * 64,
    "repeated block": "0123456789abcdef" * 4,
    "a phrase": "thisismyverysecretproductionkeyfortheclouds",
    "a password": "Password1!Password1!Password1!Password1!Password1!",
    "all digits": "1234567890" * 7,
    "a run": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ",
}


@pytest.mark.parametrize("weak", WEAK_KEYS.values(), ids=WEAK_KEYS.keys())
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_public_or_weak_secret_key_is_refused(tmp_path: Path, weak: str, command: str) -> None:
    """Finding: the public default key (or any weak one) could be configured.

    Both commands refuse each such value with a reason and without echoing it.
    """
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    args = ["cloud", command, "--database-url", url]
    env = _no_secret_env() | {SECRET_KEY_ENV: weak}
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert f"error: {SECRET_KEY_ENV} is refused: " in result.output
    assert MAKE_SECRET_KEY in result.output
    assert weak not in result.output
    with pytest.raises(ValidationError) as refused:
        CloudSettings(secret_key=weak)
    assert weak not in str(refused.value)  # not even in a developer's traceback


def test_random_keys_as_the_message_makes_them_are_accepted() -> None:
    """The refusals above are not paid for by real keys.

    `secret_key_problem` refuses a random key only by chance: a hex key for a run of 8
    (P < 64 * 2 * 16**-7 < 1e-6) or no letter (P = (10/16)**64 < 1e-13); a base64 key for one
    letter case only (P < 2 * (38/64)**43 < 1e-9). 2,000 draws of each kind all pass.
    """
    assert 64 * 2 * 16**-7 < 1e-6 and (10 / 16) ** 64 < 1e-13 and 2 * (38 / 64) ** 43 < 1e-9
    for _ in range(2_000):
        assert secret_key_problem(secrets.token_hex(32)) is None
        assert secret_key_problem(secrets.token_urlsafe(32)) is None
    # 43 base64 characters hold 258 bits, 64 hex digits 256: one less is refused.
    assert "31 bytes" in (secret_key_problem(secrets.token_hex(32)[:62]) or "")
    assert secret_key_problem(secrets.token_urlsafe(32)[:42]) is not None


# --- a forged scan-to-open session ----------------------------------------------------------------


def test_a_session_forged_with_the_public_key_or_another_key_opens_nothing(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: a scan-to-open session signed with the public default key got 202 and a
    `compartment.open`.

    The public key can no longer be configured, an API without a key cannot be built, and a
    session token signed with any key but the configured one is refused (403) with no command
    written. A token signed with the configured key still opens (the attack is not refused for
    another reason).
    """
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    with pytest.raises(SettingsError, match=SECRET_KEY_ENV):
        create_app(CloudSettings(database_url=db_url), engine=engine)  # as a bare host would
    with pytest.raises(ValidationError):
        CloudSettings(database_url=db_url, secret_key=PUBLIC_KEY)

    configured = secrets.token_hex(32)
    settings = CloudSettings(database_url=db_url, base_url=BASE_URL, secret_key=configured)
    deposit_with(engine, seal_key=configured.encode())
    expires_at = NOW + timedelta(minutes=10)

    def token(key: str) -> str:
        return make_token(
            secret_key=key.encode(),
            cab=CAB,
            parcel_ids=["P000001"],
            actor="+86 138****1234",
            expires_at=expires_at,
        )

    with TestClient(create_app(settings, engine=engine, clock=Clock(NOW))) as client:
        for forger in (PUBLIC_KEY, secrets.token_hex(32)):
            answer = client.post(
                f"/api/v1/scan/{CAB}/open", json={"token": token(forger), "parcel_id": "P000001"}
            )
            assert answer.status_code in (401, 403), answer.text
            assert "does not verify" in answer.json()["detail"]
            with Session(engine) as session:
                assert session.exec(select(CommandOutbox).where(open_commands())).all() == []
        genuine = client.post(
            f"/api/v1/scan/{CAB}/open", json={"token": token(configured), "parcel_id": "P000001"}
        )
        assert genuine.status_code == 202, genuine.text


def open_commands() -> object:
    return CommandOutbox.type == "compartment.open"


def deposit_with(engine: Engine, *, seal_key: bytes) -> list[str]:
    """Register the test cabinet with its code key sealed under `seal_key`; deposit P000001."""
    with Session(engine) as session:
        add_site(session=session, site_create=SiteCreate(id=SITE, name="Estate"), now=T0)
    with Session(engine) as session:
        repo.create_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=CAB, site_id=SITE, name="Gate 1", address="1 Road"),
            code_key=CODE_KEY,
            seal_key=seal_key,
            now=T0,
        )
        session.flush()
        session.add(Compartment(cabinet_id=CAB, id="A01", size="M"))
        session.commit()
    rng = Recording()
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=NOW)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=NOW, seal_key=seal_key, randbelow=rng)
    return rng.codes


# --- the cabinets' code keys are sealed -----------------------------------------------------------


def test_a_database_dump_holds_no_code_key_and_codes_still_verify(
    engine: Engine, db_url: str
) -> None:
    """Finding: `cabinets.code_key` was stored in clear; with a stored hash it gives every code.

    The registry makes a cabinet; its key (as the cabinet's config holds it) is nowhere in the
    row read raw with SQL, in any form the old code stored (text or hex), nor in the SQLite
    files' bytes. The code the cloud issues still verifies under the cabinet's own key, and a
    cloud with another secret key cannot unseal it.
    """
    seal_key = secrets.token_hex(32).encode()
    with Session(engine) as session:
        add_site(session=session, site_create=SiteCreate(id=SITE, name="Estate"), now=T0)
        credentials = add_cabinet(
            session=session,
            cabinet_create=CabinetCreate(id=CAB, site_id=SITE, name="Gate 1"),
            compartments=[CompartmentSpec("A01", "M")],
            now=T0,
            seal_key=seal_key,
        )
    key_text = credentials.code_key  # what `cabinet add` prints into the cabinet's config
    forms = {key_text, key_text.encode().hex(), key_text.upper(), key_text.encode().hex().upper()}
    with engine.connect() as connection:
        (stored,) = connection.execute(text("SELECT code_key FROM cabinets")).one()
    assert is_sealed(stored)
    assert not any(form in stored for form in forms)
    if db_url.startswith("sqlite"):
        path = Path(make_url(db_url).database or "")
        engine.dispose()  # checkpoint nothing away: read what is on disk now, WAL included
        dump = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert not any(form.encode() in dump for form in forms)

    rng = Recording()
    with Session(engine) as session:
        store_events(session=session, cab=CAB, envelopes=[deposited(1)], now=NOW)
        session.rollback()
        apply_pending(session=session, cab=CAB, now=NOW, seal_key=seal_key, randbelow=rng)
    (code,) = rng.codes
    with Session(engine) as session:
        parcel = session.exec(select(Parcel)).one()
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        # The cabinet checks a typed code against its own key: the cloud's hash must match.
        assert parcel.code_hash == code_hash(key_text.encode(), code)
        with pytest.raises(SealError):
            repo.cabinet_code_key(cabinet, seal_key=secrets.token_hex(32).encode())


def test_the_migration_seals_existing_keys_and_needs_the_secret(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: existing databases hold their code keys in clear.

    A database as the code before issue 11 left it (revision 0006, a clear key, a notice code
    sealed under the public default key): `locker cloud db upgrade` without the secret stops
    with a message naming the setting and changes nothing; with it, the key is sealed and the
    waiting notice's code is sealed again under the configured key, so it still goes out.
    """
    public = PUBLIC_KEY.encode()
    old = "0006_command_due_index"  # the revision before this change
    deposit_with(engine, seal_key=public)  # an old deployment, on the default key
    with Session(engine) as session:
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None
        old_row = repo.cabinet_code_key(cabinet, seal_key=public).hex()
        notice = session.exec(select(NoticeOutbox)).one()
        code = unseal(public, notice.code_sealed or "", context=notice.dedupe_key)
    # Back to what revision 0006 stored: the later revisions undone, then this one's key in clear.
    engine.dispose()
    command.downgrade(alembic_config(db_url), "0007_sealed_code_keys")
    with engine.begin() as connection:
        connection.execute(text("UPDATE cabinets SET code_key = :k"), {"k": old_row})
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": old})

    def db_upgrade(env: dict[str, str | None]) -> object:
        args = ["cloud", "db", "upgrade", "--database-url", db_url]
        return CliRunner().invoke(app, args, env=_no_secret_env() | env)

    refused = db_upgrade({})
    assert refused.exit_code == 2, refused.output
    assert f"{SECRET_KEY_ENV} is not set" in refused.output and MAKE_SECRET_KEY in refused.output
    with engine.connect() as connection:
        assert current_revision_of(engine) == old
        assert connection.execute(text("SELECT code_key FROM cabinets")).scalar() == old_row

    configured = secrets.token_hex(32)
    done = db_upgrade({SECRET_KEY_ENV: configured})
    assert done.exit_code == 0, done.output
    assert current_revision_of(engine) == head_revision()
    with Session(engine) as session:
        cabinet = session.get(Cabinet, CAB)
        assert cabinet is not None and old_row not in cabinet.code_key
        assert repo.cabinet_code_key(cabinet, seal_key=configured.encode()) == CODE_KEY
        notice = session.exec(select(NoticeOutbox)).one()
        sealed = notice.code_sealed or ""
        assert unseal(configured.encode(), sealed, context=notice.dedupe_key) == code
        with pytest.raises(SealError):
            unseal(public, sealed, context=notice.dedupe_key)


# --- SQLite files are private ---------------------------------------------------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The umask of a typical shell (0o022): files come out world-readable unless asked not to."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def modes(folder: Path, stem: str) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.glob(stem + "*")}


@pytest.mark.usefixtures("permissive_umask")
def test_the_clouds_default_sqlite_files_are_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding: the cloud's SQLite files (hashes, sealed codes, phones) were world-readable."""
    monkeypatch.delenv("LOCKER_CLOUD_DATABASE_URL", raising=False)
    settings = CloudSettings(data_dir=tmp_path / "data", secret_key=secrets.token_hex(32))
    assert settings.database_url.endswith("/data/cloud.db")  # the default file
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with engine.begin() as connection:  # a write, so the -wal and -shm exist
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            found = modes(tmp_path / "data", "cloud.db")
    finally:
        engine.dispose()
    assert {"cloud.db", "cloud.db-wal", "cloud.db-shm"} <= found.keys()
    assert set(found.values()) == {0o600}, {name: oct(mode) for name, mode in found.items()}


@pytest.mark.usefixtures("permissive_umask")
def test_the_cabinets_journal_is_mode_0600_and_an_old_one_is_tightened(tmp_path: Path) -> None:
    """Finding: the cabinet's journal (outbound events, code hashes) was world-readable."""
    path = tmp_path / "journal.db"
    with Journal.open(path, cab="cab-1"):
        found = modes(tmp_path, "journal.db")
    assert {"journal.db", "journal.db-wal", "journal.db-shm"} <= found.keys()
    assert set(found.values()) == {0o600}, {name: oct(mode) for name, mode in found.items()}

    old = tmp_path / "old.db"  # left 0644 by a version before issue 11
    Journal.open(old, cab="cab-1").close()
    old.chmod(0o644)
    with Journal.open(old, cab="cab-1"):
        assert set(modes(tmp_path, "old.db").values()) == {0o600}


# --- Twilio callbacks with no token ---------------------------------------------------------------


def test_a_twilio_callback_is_refused_when_no_auth_token_is_set(
    engine: Engine, db_url: str, twilio: FakeTwilio
) -> None:
    """Finding: with no Twilio auth token set, callbacks were verified against an empty key.

    An attacker signs a "delivered" callback with the empty key (and sends one unsigned) to an
    API with no token: 503 naming the setting, and the notice's status is unchanged.
    """
    seal_key = secrets.token_hex(32)
    deposit_with(engine, seal_key=seal_key.encode())
    with Session(engine) as session:
        notice = session.exec(select(NoticeOutbox)).one()
        notice.provider_id, notice.delivery_status = "SM" + "1" * 32, "queued"
        session.add(notice)
        session.commit()
    form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "AccountSid": "AC1"}
    forged = RequestValidator("").compute_signature(CALLBACK_URL, form)
    settings = CloudSettings(database_url=db_url, base_url=BASE_URL, secret_key=seal_key)
    assert settings.twilio_auth_token.get_secret_value() == ""
    with TestClient(create_app(settings, engine=engine, clock=Clock(NOW))) as client:
        for headers in ({"X-Twilio-Signature": forged}, {}):
            answer = client.post(CALLBACK_PATH, data=form, headers=headers)
            assert answer.status_code == 503, answer.text
            assert "LOCKER_CLOUD_TWILIO_AUTH_TOKEN is not set" in answer.json()["detail"]
    with Session(engine) as session:
        assert session.exec(select(NoticeOutbox)).one().delivery_status == "queued"


# --- Twilio's request log -------------------------------------------------------------------------


@pytest.fixture
def twilio_loggers() -> Iterator[None]:
    """Put the twilio loggers back as they were: logging is process-wide."""
    before = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        yield
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("twilio_loggers")
def test_twilios_request_log_is_not_emitted_at_info(
    twilio: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding: Twilio's HTTP client logs each request (URL with the account SID, headers) at
    INFO, which the worker logs at.

    Without our setup an SMS send emits those records; after `setup_logging(INFO)` (the
    worker's) it emits none below WARNING, and a twilio warning still comes through.
    """
    sms = TwilioSms(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        from_="+15005550006",
        base_url=twilio.url,
    )
    message = OutgoingMessage(to=PHONE, text="test", ref="1.x")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    with caplog.at_level(logging.INFO):
        sms.send(message)
    assert any(r.name.startswith("twilio") and "Request" in r.getMessage() for r in caplog.records)

    caplog.clear()
    setup_logging(logging.INFO)
    with caplog.at_level(logging.INFO):
        sms.send(message)
        logging.getLogger("twilio.http_client").warning("a twilio warning")
    from_twilio = [r for r in caplog.records if r.name.startswith("twilio")]
    assert [r.getMessage() for r in from_twilio] == ["a twilio warning"]
    assert twilio.account_sid not in caplog.text


# --- the deploy files require the key -------------------------------------------------------------


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= and compose's --env-file read them."""
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_the_deploy_env_files_require_the_secret_key(tmp_path: Path) -> None:
    """Finding: a deployment could leave the secret key to a default.

    The systemd env example names only real settings and leaves the key empty: a host that
    installs it as is gets an API that refuses to start, naming the setting. Compose refuses to
    resolve without the key (each other value of its env.example filled in).
    """
    systemd = env_file_values(DEPLOY / "systemd" / "cloud.env.example")
    fields = {f"LOCKER_CLOUD_{name.upper()}" for name in CloudSettings.model_fields}
    assert systemd.keys() <= fields, systemd.keys() - fields
    assert systemd[SECRET_KEY_ENV] == ""
    url = f"sqlite:///{tmp_path / 'cloud.db'}"
    env = _no_secret_env() | systemd | {"LOCKER_CLOUD_DATABASE_URL": url}
    result = CliRunner().invoke(app, ["cloud", "serve"], env=env)
    assert result.exit_code == 2 and f"{SECRET_KEY_ENV} is not set" in result.output

    compose = DEPLOY / "compose"
    assert env_file_values(compose / "env.example")[SECRET_KEY_ENV] == ""
    tool = require_tool("docker-compose", debian("docker-compose"))
    filled = tmp_path / ".env"
    filled.write_text(
        "".join(
            f"{key}={value or 'filled-in'}\n"
            for key, value in env_file_values(compose / "env.example").items()
            if key != SECRET_KEY_ENV
        )
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKER_", "POSTGRES_"))}
    resolved = subprocess.run(
        [tool, "--env-file", str(filled), "-f", str(compose / "compose.yaml"), "config", "-q"],
        cwd=compose, env=clean, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert resolved.returncode != 0 and f"set {SECRET_KEY_ENV} in .env" in resolved.stderr
