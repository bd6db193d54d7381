"""SQL of enrolment: codes, the wrong ones tried, and the versions of cabinets' configs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from cloud.db.enrolment_models import CabinetConfigVersion, EnrolmentCode, EnrolmentTry


def add_code(
    *,
    session: Session,
    code_hash: str,
    cab: str,
    mqtt_password_sealed: str,
    now: datetime,
    expires_at: datetime,
) -> EnrolmentCode:
    """Add a code for `cab` (the caller commits)."""
    row = EnrolmentCode(
        code_hash=code_hash,
        cabinet_id=cab,
        mqtt_password_sealed=mqtt_password_sealed,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row


def retire_codes(*, session: Session, cab: str, now: datetime) -> int:
    """Mark every unused code of `cab` used now (a new code replaces them); return how many."""
    result = session.execute(
        update(EnrolmentCode)
        .where(col(EnrolmentCode.cabinet_id) == cab, col(EnrolmentCode.used_at).is_(None))
        .values(used_at=now, mqtt_password_sealed=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def take_code(
    *, session: Session, code_hash: str, now: datetime, client: str
) -> EnrolmentCode | None:
    """Use a live code once: mark it used and return it (its sealed password still on the
    returned object, erased in the row); None if no live code has that hash.

    The UPDATE ... WHERE used_at IS NULL is the single-use guard: of two requests with the same
    code, the database lets exactly one change the row.
    """
    row = session.get(EnrolmentCode, code_hash, populate_existing=True)
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    sealed = row.mqtt_password_sealed
    result = session.execute(
        update(EnrolmentCode)
        .where(col(EnrolmentCode.code_hash) == code_hash, col(EnrolmentCode.used_at).is_(None))
        .values(used_at=now, used_by=client[:64], mqtt_password_sealed=None)
    )
    if not getattr(result, "rowcount", 0):
        return None
    session.expire(row)
    taken = EnrolmentCode.model_validate(row)
    taken.mqtt_password_sealed = sealed
    return taken


def add_try(*, session: Session, client: str, now: datetime) -> None:
    """Record one wrong (or used, or expired) code sent from `client`."""
    session.add(EnrolmentTry(client=client[:64], at=now))


def tries_since(*, session: Session, client: str, since: datetime) -> int:
    """How many wrong codes `client` sent since `since`."""
    statement = select(func.count()).where(
        col(EnrolmentTry.client) == client[:64], col(EnrolmentTry.at) >= since
    )
    return int(session.exec(statement).one())


def oldest_try_since(*, session: Session, client: str, since: datetime) -> datetime | None:
    statement = select(func.min(EnrolmentTry.at)).where(
        col(EnrolmentTry.client) == client[:64], col(EnrolmentTry.at) >= since
    )
    return session.exec(statement).one()


def latest_config(*, session: Session, cab: str) -> CabinetConfigVersion | None:
    """The newest config version of `cab`, None if it has none."""
    statement = (
        select(CabinetConfigVersion)
        .where(col(CabinetConfigVersion.cabinet_id) == cab)
        .order_by(col(CabinetConfigVersion.version).desc())
        .limit(1)
    )
    return session.exec(statement).first()


def add_config(
    *, session: Session, cab: str, version: int, sha256: str, body: dict[str, Any], now: datetime
) -> CabinetConfigVersion:
    """Add a config version of `cab` (the caller commits; the key refuses a taken version)."""
    row = CabinetConfigVersion(
        cabinet_id=cab, version=version, sha256=sha256, body=body, created_at=now
    )
    session.add(row)
    session.flush()
    return row
