"""Zero-touch enrolment and config push (docs/enrolment.md).

`issue_code` gives a registered cabinet a one-time enrolment code (the clear code exists only in
its return value; the cloud keeps its SHA-256) and mints the MQTT password the cabinet will
receive: its hash goes into the registry at once, so `locker cloud mosquitto-config` writes a
password file that already admits the cabinet, and the clear password waits sealed beside the
code until the code is used. `enrol` trades a live code, once, for the cabinet's credentials and
its config body (version, hash, body). `push_config` stores a new config version and queues it as
`config.put`.
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from cloud import errors
from cloud.core import enrolment as core
from cloud.core.access import (
    Action,
    AuditEntry,
    Principal,
    PrincipalKind,
    Resource,
    ResourceKind,
    decide,
)
from cloud.db import enrolment as db
from cloud.db.cabinets import cabinet_code_key
from cloud.db.commands import enqueue_command
from cloud.db.engine import write_session
from cloud.db.models import Cabinet
from cloud.db.sealing import SealError, seal, unseal
from cloud.services import audit
from cloud.services.registry import (
    MOSQUITTO_SALT_BYTES,
    MQTT_PASSWORD_BYTES,
    mosquitto_password_hash,
)
from protocol.config_push import ConfigBodyError, check_body, config_sha256
from protocol.messages import PutConfigData

log = logging.getLogger(__name__)

NO_CODE = "no such enrolment code, or it was used or expired: ask the operator for a new one"


class EnrolmentError(errors.InvalidInput):
    """Bad input to enrolment or config push (an unknown cabinet, a bad body); nothing written."""


@dataclass(frozen=True)
class IssuedCode:
    """A new enrolment code: shown once, to the operator who gives it to the installer."""

    cabinet_id: str
    code: str = field(repr=False)
    expires_at: datetime


@dataclass(frozen=True)
class EnrolmentGrant:
    """What a cabinet receives for its code: identity, secrets and its config body."""

    cabinet_id: str
    code_key: str = field(repr=False)
    mqtt_password: str = field(repr=False)
    config_version: int
    config_sha256: str
    config: dict[str, Any]


def _password_context(cab: str) -> str:
    return f"enrolment_codes.mqtt_password/{cab}"


def _audit(
    session: Session, who: Principal, op: str, cab: str, now: datetime, **detail: Any
) -> None:
    entry = AuditEntry(
        who.kind,
        who.id,
        Action.MANAGE_REGISTRY,
        ResourceKind.CABINET,
        cab,
        detail={"op": op, **detail},
    )
    audit.record(session=session, entry=entry, now=now)


def _check_body(body: Mapping[str, Any]) -> dict[str, Any]:
    try:
        check_body(body)
    except ConfigBodyError as err:
        raise EnrolmentError(str(err)) from None
    return dict(body)


def issue_code(
    *,
    session: Session,
    cab: str,
    seal_key: bytes,
    now: datetime,
    body: Mapping[str, Any] | None = None,
    lifetime: timedelta = core.DEFAULT_LIFETIME,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    actor: Principal | None = None,
) -> IssuedCode:
    """Give cabinet `cab` a new enrolment code and commit; its earlier unused codes die.

    `body`: the cabinet's config body, stored as version 1 if it has none yet (a cabinet needs
    one to enrol). A new code also mints a new MQTT password: regenerate the broker's password
    file (`locker cloud mosquitto-config`) and reload the broker after issuing it.
    """
    if not timedelta(minutes=1) <= lifetime <= core.MAX_LIFETIME:
        raise EnrolmentError(f"a code lives 1 minute to {core.MAX_LIFETIME.days} days")
    code = core.format_code(token_bytes(core.CODE_BYTES))
    password = base64.urlsafe_b64encode(token_bytes(MQTT_PASSWORD_BYTES)).decode().rstrip("=")
    password_hash = mosquitto_password_hash(password, salt=token_bytes(MOSQUITTO_SALT_BYTES))
    who = actor or audit.cli_principal()
    write_session(session)
    try:
        cabinet = session.get(Cabinet, cab)
        if cabinet is None:
            raise EnrolmentError(f"no cabinet {cab!r}: add it first (`locker cloud cabinet add`)")
        if db.latest_config(session=session, cab=cab) is None:
            if body is None:
                raise EnrolmentError(
                    f"cabinet {cab!r} has no config yet: give its layout file (--layout)"
                )
            clean = _check_body(body)
            db.add_config(
                session=session,
                cab=cab,
                version=1,
                sha256=config_sha256(clean),
                body=clean,
                now=now,
            )
        db.retire_codes(session=session, cab=cab, now=now)
        cabinet.mqtt_password_hash = password_hash
        session.add(cabinet)
        db.add_code(
            session=session,
            code_hash=core.code_hash(code),
            cab=cab,
            mqtt_password_sealed=seal(seal_key, password, context=_password_context(cab)),
            now=now,
            expires_at=now + lifetime,
        )
        _audit(session, who, "enrolment code", cab, now, expires_at=(now + lifetime).isoformat())
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return IssuedCode(cabinet_id=cab, code=code, expires_at=now + lifetime)


def enrol(
    *, session: Session, code: str, client: str, seal_key: bytes, now: datetime
) -> EnrolmentGrant:
    """Trade a live enrolment code for its cabinet's credentials and config, once; commit.

    Raise RateLimited when `client` has sent too many wrong codes this hour (the code is not
    even looked at), NotFound (the same words for an unknown, used or expired code) otherwise;
    each wrong code is recorded against `client` first.
    """
    write_session(session)
    try:
        since = now - core.TRIES_WINDOW
        if (
            db.tries_since(session=session, client=client, since=since)
            >= core.TRIES_PER_CLIENT_HOUR
        ):
            oldest = db.oldest_try_since(session=session, client=client, since=since)
            wait_s = int(core.TRIES_WINDOW.total_seconds())
            if oldest is not None:
                wait_s = max(1, math.ceil((oldest - since).total_seconds()))
            session.rollback()
            raise errors.RateLimited(
                f"too many wrong enrolment codes from this address; try again in {wait_s} s",
                retry_after_s=wait_s,
            )
        taken = None
        try:
            hashed = core.code_hash(code)
        except core.EnrolmentCodeError:
            hashed = None
        if hashed is not None:
            taken = db.take_code(session=session, code_hash=hashed, now=now, client=client)
        if taken is None:
            db.add_try(session=session, client=client, now=now)
            session.commit()
            log.warning("enrolment: a wrong, used or expired code from %s", client)
            raise errors.NotFound(NO_CODE)
        cab = taken.cabinet_id
        cabinet = session.get(Cabinet, cab)
        principal = Principal(PrincipalKind.ENROLMENT, hashed[:12], cabinet_id=cab)
        resource = (
            None
            if cabinet is None
            else Resource(ResourceKind.CABINET, cab, site_id=cabinet.site_id)
        )
        decision = decide(principal, Action.ENROL_CABINET, resource)
        config = db.latest_config(session=session, cab=cab)
        if (
            not decision.allowed
            or cabinet is None
            or config is None
            or not taken.mqtt_password_sealed
        ):
            session.rollback()
            raise errors.NotFound(NO_CODE)
        try:
            password = unseal(seal_key, taken.mqtt_password_sealed, context=_password_context(cab))
            code_key = cabinet_code_key(cabinet, seal_key=seal_key).decode()
        except SealError as err:
            session.rollback()
            raise errors.Unavailable(
                "the cloud cannot open its sealed secrets: is LOCKER_CLOUD_SECRET_KEY the one the "
                "code was issued under?"
            ) from err
        _audit(session, principal, "enrol", cab, now, client=client, config_version=config.version)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("enrolment: cabinet %s enrolled from %s (config v%d)", cab, client, config.version)
    return EnrolmentGrant(
        cabinet_id=cab,
        code_key=code_key,
        mqtt_password=password,
        config_version=config.version,
        config_sha256=config.sha256,
        config=dict(config.body),
    )


def push_config(
    *,
    session: Session,
    cab: str,
    body: Mapping[str, Any],
    now: datetime,
    actor: Principal | None = None,
) -> tuple[int, str]:
    """Store `body` as cabinet `cab`'s next config version, queue `config.put`; commit.

    Return (version, sha256). The cabinet applies it atomically, keeps the previous one to roll
    back to, and reports the hash it runs in its birth.
    """
    clean = _check_body(body)
    sha = config_sha256(clean)
    who = actor or audit.cli_principal()
    write_session(session)
    try:
        if session.get(Cabinet, cab) is None:
            raise EnrolmentError(f"no cabinet {cab!r}")
        latest = db.latest_config(session=session, cab=cab)
        version = 1 if latest is None else latest.version + 1
        db.add_config(session=session, cab=cab, version=version, sha256=sha, body=clean, now=now)
        data = PutConfigData(version=version, sha256=sha, config=clean)
        enqueue_command(session=session, cab=cab, type="config.put", data=data, now=now)
        _audit(session, who, "config push", cab, now, version=version, sha256=sha)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return version, sha
