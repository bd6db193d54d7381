"""Scan-to-open's rows: the one-time codes asked for, the wrong tries, and what they count.

Every count here feeds a limit of `cloud.services.scan_open` (the numbers are its own); the
statements a request runs must not depend on whether the phone has a parcel (see
`queue_code_text`), so none of these branches on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, func, insert, literal
from sqlmodel import Session, col, select

from cloud.core.notices import Audience, Channel, NoticeKind
from cloud.core.parcels import Status
from cloud.db.models import Cabinet, NoticeOutbox, Parcel, WechatBinding
from cloud.db.notices import QUEUED
from cloud.db.parcels import LIVE_STATUSES
from cloud.db.scan_models import ScanOtp, ScanTry
from cloud.db.types import UtcDateTime


def lock_cabinet_key_share(*, session: Session, cab: str) -> bool:
    """Lock the cabinet's row (`FOR NO KEY UPDATE`) for this transaction; whether it exists.

    Rows that merely refer to the cabinet (another transaction's command or event insert) do
    not wait for it, so there is no lock cycle with them (as `cabinets.lock_cabinets`).
    """
    locked = select(Cabinet.id).where(Cabinet.id == cab).with_for_update(key_share=True)
    return session.exec(locked).first() is not None


def _live_parcel_ids(cab: str, phone: str) -> Any:
    return (
        select(Parcel.id)
        .where(
            Parcel.cabinet_id == cab,
            Parcel.phone == phone,
            col(Parcel.status).in_(LIVE_STATUSES),
        )
        .order_by(col(Parcel.created_at), col(Parcel.id))
    )


def live_parcel_ids(*, session: Session, cab: str, phone: str) -> list[str]:
    """Return the row ids of `phone`'s live parcels in `cab`, oldest first."""
    return list(session.exec(_live_parcel_ids(cab, phone)).all())


def queue_code_text(
    *,
    session: Session,
    cab: str,
    phone: str,
    key: str,
    sealed: str,
    expires_at: datetime,
    now: datetime,
    language: str | None = None,
) -> None:
    """Queue the code's SMS for the phone's first parcel here, if it has one: one statement.

    INSERT ... SELECT inserts one row or none; the same statement runs either way, in the same
    transaction, so the time the request takes does not tell whether the phone has a parcel.
    """
    outbox = NoticeOutbox.__table__
    source = _live_parcel_ids(cab, phone).limit(1)
    values = {
        "dedupe_key": literal(key),
        "kind": literal(NoticeKind.SCAN_OTP.value),
        "audience": literal(Audience.RECIPIENT.value),
        "to_phone": literal(phone),
        "deadline": literal(expires_at, UtcDateTime()),
        "code_sealed": literal(sealed),
        "channel": literal(Channel.SMS.value),
        "language": literal(language, String(8)),
        "status": literal(QUEUED),
        "attempts": literal(0),
        "next_attempt_at": literal(now, UtcDateTime()),
        "created_at": literal(now, UtcDateTime()),
    }
    columns = ["parcel_row_id", *values]
    selected = source.with_only_columns(col(Parcel.id), *values.values())
    session.execute(insert(outbox).from_select(columns, selected))


def _count(session: Session, statement: Any) -> int:
    return session.exec(statement).one()


def codes_asked(
    *,
    session: Session,
    since: datetime,
    phone: str | None = None,
    texted_at: str | None = None,
    client: str | None = None,
) -> int:
    """Count the codes asked for after `since`: by `phone`, texted at cabinet `texted_at`, or
    from `client` (give exactly one)."""
    statement = select(func.count()).select_from(ScanOtp).where(col(ScanOtp.created_at) > since)
    if phone is not None:
        statement = statement.where(ScanOtp.phone == phone)
    if texted_at is not None:
        statement = statement.where(ScanOtp.cabinet_id == texted_at, col(ScanOtp.sent).is_(True))
    if client is not None:
        statement = statement.where(ScanOtp.client == client)
    return _count(session, statement)


def codes_asked_with_nonce(*, session: Session, nonce_hash: str) -> int:
    """Count the codes ever asked for with one QR nonce."""
    by_nonce = select(func.count()).select_from(ScanOtp).where(ScanOtp.nonce_hash == nonce_hash)
    return _count(session, by_nonce)


def wrong_tries(
    *,
    session: Session,
    nonce_hash: str | None = None,
    since: datetime | None = None,
    client: str | None = None,
    cab: str | None = None,
) -> int:
    """Count the wrong codes typed: with a QR nonce ever, or after `since` from `client` or at
    cabinet `cab`."""
    statement = select(func.count()).select_from(ScanTry)
    if nonce_hash is not None:
        statement = statement.where(ScanTry.nonce_hash == nonce_hash)
    if since is not None:
        statement = statement.where(col(ScanTry.at) > since)
    if client is not None:
        statement = statement.where(ScanTry.client == client)
    if cab is not None:
        statement = statement.where(ScanTry.cabinet_id == cab)
    return _count(session, statement)


def oldest_wrong_try(*, session: Session, cab: str, since: datetime) -> datetime | None:
    """Return when the oldest wrong code at `cab` after `since` was typed."""
    statement = select(func.min(ScanTry.at)).where(
        ScanTry.cabinet_id == cab, col(ScanTry.at) > since
    )
    return session.exec(statement).one()


def lock_latest_code(*, session: Session, cab: str, phone: str) -> ScanOtp | None:
    """Return the code last asked for by `phone` at `cab`, locked for this transaction."""
    statement = (
        select(ScanOtp)
        .where(ScanOtp.cabinet_id == cab, ScanOtp.phone == phone)
        .order_by(col(ScanOtp.created_at).desc(), col(ScanOtp.id).desc())
        .with_for_update()
    )
    return session.exec(statement).first()


def live_parcels_among(
    *, session: Session, cab: str, phone: str, row_ids: Sequence[str]
) -> Sequence[Parcel]:
    """Return those of the parcel rows `row_ids` that are `phone`'s and live in `cab`."""
    statement = (
        select(Parcel)
        .where(
            Parcel.cabinet_id == cab,
            Parcel.phone == phone,
            col(Parcel.id).in_(list(row_ids)),
            col(Parcel.status).in_(LIVE_STATUSES),
        )
        .order_by(col(Parcel.created_at), col(Parcel.id))
    )
    return session.exec(statement).all()


def other_bindings(*, session: Session, phone: str, openid: str) -> Sequence[WechatBinding]:
    """Return the WeChat users other than `openid` bound to `phone`."""
    statement = select(WechatBinding).where(
        WechatBinding.phone == phone, WechatBinding.openid != openid
    )
    return session.exec(statement).all()


def in_locker_by_parcel_id(
    *, session: Session, cab: str, parcel_ids: Sequence[str]
) -> Sequence[Parcel]:
    """Return those of the cabinet-made `parcel_ids` still in a locker of `cab`."""
    statement = select(Parcel).where(
        Parcel.cabinet_id == cab,
        col(Parcel.parcel_id).in_(list(parcel_ids)),
        Parcel.status == Status.IN_LOCKER.value,
    )
    return session.exec(statement).all()


def lock_parcel_by_parcel_id(*, session: Session, parcel_id: str) -> Parcel | None:
    """Return the parcel the cabinet named `parcel_id`, locked for this transaction."""
    statement = select(Parcel).where(Parcel.parcel_id == parcel_id).with_for_update()
    return session.exec(statement).first()
