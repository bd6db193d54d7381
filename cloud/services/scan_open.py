"""Scan-to-open: the idle-screen QR's nonce, phone + SMS one-time code, and the door's command.

The flow (issue 4 item 6), every step a request the page makes:

1. the cabinet's idle screen shows a QR of `{base_url}/s/{cab}/{nonce}`; the nonce is the time it
   was made plus an HMAC of (cab, time) under the cloud's secret key: no database state, any API
   replica can check it, and it dies after NONCE_TTL_S, so a photo of the screen is soon useless;
2. `request_otp` texts a 6-digit code to the phone typed on the page, but only if that phone has a
   live parcel in the cabinet; the answer is the same either way, so the page cannot be used to
   learn who has parcels where. Each request is a `scan_otps` row (the code's keyed hash only),
   which is also the rate limit's log;
3. `verify_otp` checks the code against that row (five tries, one use: a counter the client cannot
   reset, which is why this state lives in a table and not in a signed token) and returns a
   short-lived signed session token listing the phone's live parcels in that cabinet;
4. `open_parcel` checks the token, then writes the `compartment.open` command to the outbox and a
   timeline row, in one transaction.

    ScanError                   refused; nothing changed (but a wrong try or failed SMS counts)
     ├── NonceError             the QR's nonce is malformed, forged, for another cabinet or stale
     ├── UnknownCabinet         no such cabinet
     ├── RateLimited            too many codes asked for: `retry_after_s`
     ├── SmsUnavailable         no SMS sender configured, or it failed
     ├── OtpRefused             wrong, expired, used or locked code: `outcome`
     ├── TokenError             the session token is malformed, forged, expired or for another cab
     └── NotOpenable            the parcel is not in the token or no longer in the locker
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import qrcode
from qrcode.image.svg import SvgPathImage
from sqlalchemy import func
from sqlmodel import Session, col, select

from cloud.core.codes import (
    OTP_MAX_ATTEMPTS,
    OTP_TTL_S,
    OneTimeCode,
    OtpCheck,
    check_one_time_code,
    issue_one_time_code,
)
from cloud.core.parcels import Source, Status
from cloud.core.phones import mask_phone
from cloud.db import repo
from cloud.db.engine import write_session
from cloud.db.models import CommandOutbox, Parcel, ParcelEvent
from cloud.db.scan_models import ScanOtp
from cloud.notify.errors import SendError
from cloud.notify.ports import OutgoingMessage, Sender
from protocol.messages import OpenCompartmentData

log = logging.getLogger(__name__)

RandBelow = Callable[[int], int]

NONCE_TTL_S = 5 * 60  # the kiosk refreshes its QR well within this
NONCE_SKEW_S = 30  # an API replica whose clock runs a little behind still accepts a fresh nonce
# Verifying may come a while after the code was asked for (the SMS takes time to arrive).
VERIFY_NONCE_TTL_S = NONCE_TTL_S + OTP_TTL_S
SESSION_TTL_S = 5 * 60
# Codes a phone may ask for per window, and a cabinet's screen for all phones together: caps the
# SMS bill and the guesses (5 tries x 3 codes per 10 min against a million codes).
OTP_PER_PHONE = 3
OTP_PER_CABINET = 30
OTP_WINDOW_S = 10 * 60
# A remote open the cabinet has not received by then must not happen at all: the recipient has
# walked away, and a door springing open later would leave the parcel to anyone.
OPEN_COMMAND_TTL_S = 2 * 60
OPEN_REASON = "scan-to-open"

_NONCE_PURPOSE = b"locker-scan-nonce-v1"
_SESSION_PURPOSE = b"locker-scan-session-v1"
_OTP_PURPOSE = b"locker-scan-otp-v1"
_MAC_BYTES = 12  # 96 bits: forging one by guessing is out of reach, and the QR stays small


class ScanError(Exception):
    """A scan-to-open step was refused; nothing changed."""


class NonceError(ScanError):
    """The QR's nonce is malformed, forged, for another cabinet or too old."""


class UnknownCabinet(ScanError):
    """No cabinet by that id."""


class RateLimited(ScanError):
    """Too many one-time codes asked for; try again after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SmsUnavailable(ScanError):
    """The one-time code could not be texted."""


class OtpRefused(ScanError):
    """The one-time code is wrong, expired, used or locked (`outcome`)."""

    def __init__(self, message: str, *, outcome: OtpCheck | None) -> None:
        super().__init__(message)
        self.outcome = outcome


class TokenError(ScanError):
    """The session token is malformed, forged, expired or for another cabinet."""


class NotOpenable(ScanError):
    """The parcel is not one the session may open, or it has left the locker."""


def _subkey(secret_key: bytes, purpose: bytes) -> bytes:
    # One secret, one derived key per use: a nonce can never pass as a session token's MAC.
    return hmac.new(secret_key, purpose, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_claims(secret_key: bytes, purpose: bytes, claims: dict[str, object]) -> str:
    """Return `claims` as `<body>.<mac>` (URL-safe base64 of compact JSON, HMAC for `purpose`)."""
    body = json.dumps(claims, separators=(",", ":")).encode()
    mac = hmac.new(_subkey(secret_key, purpose), body, "sha256").digest()
    return f"{_b64(body)}.{_b64(mac)}"


def verify_claims(secret_key: bytes, purpose: bytes, signed: str, what: str) -> dict[str, Any]:
    """Return the claims `sign_claims` made for `purpose`; raise TokenError naming `what`.

    The caller checks the fields it needs (and turns their absence into a TokenError too).
    """
    body_text, _, mac_text = signed.partition(".")
    try:
        body, mac = _unb64(body_text), _unb64(mac_text)
    except ValueError:
        raise TokenError(f"{what} is malformed") from None
    expected = hmac.new(_subkey(secret_key, purpose), body, "sha256").digest()
    if not mac or not hmac.compare_digest(expected, mac):
        raise TokenError(f"{what} does not verify")
    try:
        claims = json.loads(body)
    except ValueError:
        raise TokenError(f"{what} is malformed") from None
    if not isinstance(claims, dict):
        raise TokenError(f"{what} is malformed")
    return claims


# --- the idle-screen QR ---------------------------------------------------------------------------


def make_nonce(*, secret_key: bytes, cab: str, now: datetime) -> str:
    """Return a nonce for cabinet `cab` made at `now`: `<unix s>.<MAC>`."""
    issued_s = int(now.timestamp())
    mac = hmac.new(_subkey(secret_key, _NONCE_PURPOSE), f"{cab}|{issued_s}".encode(), "sha256")
    return f"{issued_s}.{_b64(mac.digest()[:_MAC_BYTES])}"


def check_nonce(
    *, secret_key: bytes, cab: str, nonce: str, now: datetime, ttl_s: int = NONCE_TTL_S
) -> None:
    """Raise NonceError unless `nonce` was made for `cab` by this cloud within `ttl_s`."""
    issued_text, _, mac_text = nonce.partition(".")
    if not issued_text.isdigit() or not mac_text or len(issued_text) > 12:
        raise NonceError("the QR code's nonce is malformed: scan the cabinet's screen again")
    expected = make_nonce(secret_key=secret_key, cab=cab, now=_from_unix(int(issued_text)))
    if not hmac.compare_digest(expected, nonce):
        raise NonceError("the QR code is not this cabinet's: scan the cabinet's screen again")
    age_s = now.timestamp() - int(issued_text)
    if age_s > ttl_s or age_s < -NONCE_SKEW_S:
        raise NonceError("the QR code has expired: scan the cabinet's screen again")


def _from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def scan_url(base_url: str, cab: str, nonce: str) -> str:
    """Return the URL the idle-screen QR holds."""
    return f"{base_url.rstrip('/')}/s/{cab}/{nonce}"


def qr_svg(text: str) -> str:
    """Render `text` as a QR code in SVG (qrcode's path factory: no Pillow needed)."""
    image = qrcode.make(text, image_factory=SvgPathImage, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue().decode()


def ensure_cabinet(*, session: Session, cab: str) -> None:
    """Raise UnknownCabinet unless `cab` is registered."""
    if repo.get_cabinet(session=session, cab=cab) is None:
        raise UnknownCabinet(f"no cabinet {cab!r}")


# --- one-time codes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OtpRequested:
    """What the page is told after asking for a code (the same whoever the phone is)."""

    expires_at: datetime


def request_otp(
    *,
    session: Session,
    sms: Sender | None,
    secret_key: bytes,
    cab: str,
    nonce: str,
    phone: str,
    now: datetime,
    randbelow: RandBelow = secrets.randbelow,
) -> OtpRequested:
    """Text a one-time code to `phone` (E.164) if it has a live parcel in `cab`; commit.

    Raise NonceError, UnknownCabinet or RateLimited, changing nothing; SmsUnavailable if the
    text could not be sent (the request still counts against the phone's limit).
    """
    check_nonce(secret_key=secret_key, cab=cab, nonce=nonce, now=now)
    _begin_write(session)
    try:
        ensure_cabinet(session=session, cab=cab)
        _check_rate(session=session, cab=cab, phone=phone, now=now)
        has_parcels = bool(repo.live_parcels(session=session, cab=cab, phone=phone))
        if has_parcels and sms is None:
            raise SmsUnavailable("SMS is not configured on this server")
        code, record = issue_one_time_code(
            phone=phone, randbelow=randbelow, key=_subkey(secret_key, _OTP_PURPOSE), now=now
        )
        row = ScanOtp(
            cabinet_id=cab,
            phone=phone,
            code_hash=record.code_hash,
            expires_at=record.expires_at,
            attempts_left=record.attempts_left,
            sent=has_parcels,
            created_at=now,
        )
        session.add(row)
        session.flush()
        row_id = row.id
        session.commit()
    except BaseException:
        session.rollback()
        raise
    if not has_parcels or sms is None:
        log.info("scan-to-open code for %s at %s: no parcel, none sent", mask_phone(phone), cab)
        return OtpRequested(expires_at=record.expires_at)
    # Sent after the commit: a write lock (all of SQLite) must not wait on Twilio. A failed send
    # still counts against the phone's limit, which is what a limit on SMS traffic should do.
    text = (
        f"Parcel locker {cab}: your one-time code is {code}. "
        f"It expires in {OTP_TTL_S // 60} minutes."
    )
    try:
        sms.send(OutgoingMessage(to=phone, text=text, ref=f"scan-otp.{row_id}"))
    except SendError as err:
        log.warning("scan-to-open code to %s not sent: %s", mask_phone(phone), err)
        raise SmsUnavailable("the code could not be texted: try again in a minute") from None
    log.info("scan-to-open code sent to %s for cabinet %s", mask_phone(phone), cab)
    return OtpRequested(expires_at=record.expires_at)


def _check_rate(*, session: Session, cab: str, phone: str, now: datetime) -> None:
    since = now - timedelta(seconds=OTP_WINDOW_S)
    recent = select(func.count()).select_from(ScanOtp).where(col(ScanOtp.created_at) > since)
    by_phone = session.exec(recent.where(ScanOtp.phone == phone)).one()
    by_cabinet = session.exec(recent.where(ScanOtp.cabinet_id == cab)).one()
    if by_phone >= OTP_PER_PHONE or by_cabinet >= OTP_PER_CABINET:
        raise RateLimited(
            f"too many codes asked for; try again in {OTP_WINDOW_S // 60} minutes",
            retry_after_s=OTP_WINDOW_S,
        )


# --- sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanSession:
    """A verified phone's session: its signed token and its live parcels in the cabinet."""

    token: str
    expires_at: datetime
    parcels: Sequence[Parcel]


def verify_otp(
    *,
    session: Session,
    secret_key: bytes,
    cab: str,
    nonce: str,
    phone: str,
    code: str,
    now: datetime,
    bind_openid: str | None = None,
) -> ScanSession:
    """Check `code` for `phone` at `cab`; return a session token; commit the try either way.

    `bind_openid` (from a WeChat sign-in's bind ticket) is bound to the phone once it is proven.
    Raise NonceError, UnknownCabinet or OtpRefused (a wrong try is counted and committed).
    """
    check_nonce(secret_key=secret_key, cab=cab, nonce=nonce, now=now, ttl_s=VERIFY_NONCE_TTL_S)
    _begin_write(session)
    try:
        ensure_cabinet(session=session, cab=cab)
        row = session.exec(
            select(ScanOtp)
            .where(ScanOtp.cabinet_id == cab, ScanOtp.phone == phone)
            .order_by(col(ScanOtp.created_at).desc(), col(ScanOtp.id).desc())
            .with_for_update()
        ).first()
        if row is None:
            raise OtpRefused("no code was asked for this phone here", outcome=None)
        record = OneTimeCode(
            phone=row.phone,
            code_hash=row.code_hash,
            expires_at=row.expires_at,
            attempts_left=row.attempts_left,
            used=row.used,
        )
        outcome, after = check_one_time_code(
            record, code, key=_subkey(secret_key, _OTP_PURPOSE), now=now
        )
        row.attempts_left, row.used = after.attempts_left, after.used
        session.add(row)
        if outcome is not OtpCheck.OK:
            session.commit()  # the wrong try must count even though the request fails
            log.info("scan-to-open code for %s at %s: %s", mask_phone(phone), cab, outcome.value)
            raise OtpRefused(_OTP_MESSAGES[outcome], outcome=outcome)
        parcels = repo.live_parcels(session=session, cab=cab, phone=phone)
        if bind_openid is not None:
            repo.bind_wechat(session=session, openid=bind_openid, phone=phone, now=now)
            log.info("WeChat user bound to %s at cabinet %s", mask_phone(phone), cab)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    token, expires_at = phone_token(
        secret_key=secret_key, cab=cab, phone=phone, parcels=parcels, now=now
    )
    return ScanSession(token=token, expires_at=expires_at, parcels=parcels)


def phone_token(
    *, secret_key: bytes, cab: str, phone: str, parcels: Sequence[Parcel], now: datetime
) -> tuple[str, datetime]:
    """Return the session token (and its expiry) of a proven `phone` for its `parcels` at `cab`."""
    expires_at = now + timedelta(seconds=SESSION_TTL_S)
    token = make_token(
        secret_key=secret_key,
        cab=cab,
        parcel_ids=[p.parcel_id for p in parcels if p.parcel_id],
        actor=mask_phone(phone),
        expires_at=expires_at,
    )
    return token, expires_at


_OTP_MESSAGES = {
    OtpCheck.WRONG: "wrong code",
    OtpCheck.EXPIRED: "the code has expired: ask for a new one",
    OtpCheck.USED: "the code was used already: ask for a new one",
    OtpCheck.LOCKED: f"{OTP_MAX_ATTEMPTS} wrong tries: ask for a new code",
}


@dataclass(frozen=True)
class TokenClaims:
    """What a session token says: the cabinet, the parcels it may open, who (masked), until."""

    cab: str
    parcel_ids: tuple[str, ...]
    actor: str
    expires_at: datetime


def make_token(
    *, secret_key: bytes, cab: str, parcel_ids: Sequence[str], actor: str, expires_at: datetime
) -> str:
    """Return a signed session token (it holds the masked phone, never the number)."""
    claims = {"cab": cab, "pids": list(parcel_ids), "actor": actor}
    return sign_claims(secret_key, _SESSION_PURPOSE, {**claims, "exp": int(expires_at.timestamp())})


def check_token(*, secret_key: bytes, token: str, cab: str, now: datetime) -> TokenClaims:
    """Return a session token's claims, or raise TokenError."""
    claims = verify_claims(secret_key, _SESSION_PURPOSE, token, "the session token")
    try:
        claimed_cab, expires_s = str(claims["cab"]), int(claims["exp"])
        parcel_ids, actor = tuple(map(str, claims["pids"])), str(claims["actor"])
    except (ValueError, KeyError, TypeError):
        raise TokenError("the session token is malformed") from None
    if claimed_cab != cab:
        raise TokenError("the session token is for another cabinet")
    if now.timestamp() >= expires_s:
        raise TokenError("the session has expired: scan the cabinet's screen again")
    return TokenClaims(
        cab=claimed_cab, parcel_ids=parcel_ids, actor=actor, expires_at=_from_unix(expires_s)
    )


def session_parcels(
    *, session: Session, secret_key: bytes, cab: str, token: str, now: datetime
) -> tuple[TokenClaims, Sequence[Parcel]]:
    """Return a session token's claims and those of its parcels still in the locker.

    For a page that got its token by redirect (the WeChat sign-in) and must show the parcels.
    Raise TokenError.
    """
    claims = check_token(secret_key=secret_key, token=token, cab=cab, now=now)
    rows = session.exec(
        select(Parcel).where(
            Parcel.cabinet_id == cab,
            col(Parcel.parcel_id).in_(claims.parcel_ids),
            Parcel.status == Status.IN_LOCKER.value,
        )
    ).all()
    session.rollback()
    return claims, rows


# --- opening --------------------------------------------------------------------------------------


def open_parcel(
    *, session: Session, secret_key: bytes, cab: str, token: str, parcel_id: str, now: datetime
) -> CommandOutbox:
    """Queue `compartment.open` for the parcel's door and a timeline row, in one transaction.

    Raise TokenError or NotOpenable, changing nothing.
    """
    claims = check_token(secret_key=secret_key, token=token, cab=cab, now=now)
    if parcel_id not in claims.parcel_ids:
        raise NotOpenable(f"parcel {parcel_id!r} is not one this session may open")
    _begin_write(session)
    try:
        row = session.exec(
            select(Parcel).where(Parcel.parcel_id == parcel_id).with_for_update()
        ).first()
        if row is None or row.cabinet_id != cab:
            raise NotOpenable(f"parcel {parcel_id!r} is not in cabinet {cab!r}")
        if row.status != Status.IN_LOCKER.value or row.compartment is None:
            raise NotOpenable(f"parcel {parcel_id!r} is no longer in the locker ({row.status})")
        data = OpenCompartmentData(
            compartment=row.compartment, reason=OPEN_REASON, actor=claims.actor
        )
        command = repo.enqueue_command(
            session=session, cab=cab, type="compartment.open", data=data, now=now
        )
        command.expires_at = now + timedelta(seconds=OPEN_COMMAND_TTL_S)
        session.add(
            ParcelEvent(
                parcel_row_id=row.id,
                status=row.status,
                at=now,
                source=Source.RECIPIENT.value,
                note=(
                    f"door {row.compartment} open requested by {claims.actor} "
                    f"({OPEN_REASON}, command {command.id})"
                ),
                cabinet_id=cab,
                created_at=now,
            )
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("scan-to-open: %s opens %s/%s", claims.actor, cab, row.compartment)
    return command


OTP_KEEP_S = 24 * 3600  # a day outlasts every code's life and every rate-limit window


def forget_old_otps(*, session: Session, now: datetime) -> int:
    """Delete one-time-code rows older than OTP_KEEP_S; commit; return how many."""
    if session.in_transaction():
        session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    return repo.delete_older_than(
        session=session,
        column=ScanOtp.__table__.c.created_at,
        before=now - timedelta(seconds=OTP_KEEP_S),
    )


def _begin_write(session: Session) -> None:
    if session.in_transaction():
        session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    write_session(session)
