"""Scan-to-open: the idle-screen QR's nonce, phone + SMS one-time code, and the door's command.

The flow (issue 4 item 6), every step a request the page makes:

1. the cabinet's idle screen shows a QR of `{base_url}/s/{cab}/{nonce}`; the nonce is the time it
   was made plus an HMAC of (cab, time) under the cloud's secret key: no database state, any API
   replica can check it, and it dies after NONCE_TTL_S, so a photo of the screen is soon useless.
   Only the cabinet itself may fetch one (`check_cabinet_credentials`: its MQTT password), so a
   nonce means someone saw the screen;
2. `request_otp` queues a 6-digit code for the phone typed on the page in the notice outbox, but
   only if that phone has a live parcel in the cabinet; the answer, and the statements the
   request runs, are the same either way (one INSERT ... SELECT that inserts one row or none),
   so the page cannot be used to learn who has parcels where. Each request is a `scan_otps` row
   (the code's keyed hash only, the parcels it was asked for), which is also the limits' log;
3. `verify_otp` checks the code against that row (five tries, one use: a counter the client cannot
   reset, which is why this state lives in a table and not in a signed token) and returns a
   short-lived signed session token listing the parcels the code was asked for that are still
   in that cabinet. Every wrong code is a `scan_tries` row: wrong codes are limited per QR nonce,
   per client address and per cabinet-day, and the last bounds a remote guesser's chance of
   opening a door (`guess_bound`);
4. `open_parcel` checks the token, then writes the `compartment.open` command to the outbox and a
   timeline row, in one transaction.

    ScanError                   refused; nothing changed (but a wrong try counts)
     ├── NonceError             the QR's nonce is malformed, forged, for another cabinet or stale
     ├── RateLimited            too many codes asked for, or wrong codes typed: `retry_after_s`
     ├── OtpRefused             wrong, expired, used or locked code: `outcome`
     ├── TokenError             the session token is malformed, forged, expired or for another cab
     └── NotOpenable            the parcel is not in the token or no longer in the locker
    (and `cloud.errors.UnknownCabinet`: no such cabinet)

Each is also a node of `cloud.errors`' tree (NonceError and TokenError are Forbidden, OtpRefused
Unauthenticated, NotOpenable a Conflict), which is how the API chooses their status codes.
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
from sqlmodel import Session

from cloud import errors
from cloud.core.codes import (
    OTP_LENGTH,
    OTP_MAX_ATTEMPTS,
    OTP_TTL_S,
    OneTimeCode,
    OtpCheck,
    check_one_time_code,
    issue_one_time_code,
)
from cloud.core.notices import Audience, Channel, NoticeKind
from cloud.core.parcels import Source, Status
from cloud.core.phones import mask_phone
from cloud.core.policies import Language
from cloud.db import scan
from cloud.db.cabinets import get_cabinet
from cloud.db.commands import enqueue_command
from cloud.db.engine import write_session
from cloud.db.models import CommandOutbox, NoticeOutbox, Parcel, ParcelEvent
from cloud.db.rows import delete_older_than
from cloud.db.scan_models import CLIENT_LENGTH, ScanOtp, ScanTry
from cloud.db.sealing import seal
from cloud.db.wechat import bind_wechat
from protocol.messages import OpenCompartmentData

log = logging.getLogger(__name__)

RandBelow = Callable[[int], int]

NONCE_TTL_S = 5 * 60  # the kiosk refreshes its QR well within this
NONCE_REFRESH_S = 60  # how often the kiosk fetches a new QR (cabinet/kiosk/scan_qr.py)
NONCE_SKEW_S = 30  # an API replica whose clock runs a little behind still accepts a fresh nonce
# Verifying may come a while after the code was asked for (the SMS takes time to arrive).
VERIFY_NONCE_TTL_S = NONCE_TTL_S + OTP_TTL_S
SESSION_TTL_S = 5 * 60
# Codes asked for, per OTP_WINDOW_S: by one phone; texted at one cabinet (the SMS bill: only codes
# actually sent count, so requests for random numbers cannot shut real recipients out); by one
# client address. And per QR nonce: one scan of the screen serves one person or a household.
OTP_PER_PHONE = 3
OTP_PER_CABINET = 30
OTP_PER_CLIENT = 10
OTP_PER_NONCE = 5
OTP_WINDOW_S = 10 * 60
# Wrong codes typed (guesses). Each guess at a 6-digit code wins with probability at most
# 1 / (10**OTP_LENGTH - OTP_MAX_ATTEMPTS + 1); a cabinet takes at most TRIES_PER_CABINET_DAY of
# them in any TRIES_WINDOW_S, whoever types them, from wherever, with whichever phone or nonce:
# a remote guesser opens a door there with probability <= 50 / 999,996 ~ 5.0e-5 a day (the
# keypad's figure; the bound is 1e-4). The per-nonce and per-address limits make one scan or one
# address unable to spend that budget alone (and so to shut scan-to-open for the day).
TRIES_PER_NONCE = 10
TRIES_PER_CLIENT_DAY = 20
TRIES_PER_CABINET_DAY = 50
TRIES_WINDOW_S = 24 * 3600
# A remote open the cabinet has not received by then must not happen at all: the recipient has
# walked away, and a door springing open later would leave the parcel to anyone.
OPEN_COMMAND_TTL_S = 2 * 60
OPEN_REASON = "scan-to-open"

_NONCE_PURPOSE = b"locker-scan-nonce-v1"
_SESSION_PURPOSE = b"locker-scan-session-v1"
_OTP_PURPOSE = b"locker-scan-otp-v1"
_MAC_BYTES = 12  # 96 bits: forging one by guessing is out of reach, and the QR stays small


class ScanError(errors.CloudError):
    """A scan-to-open step was refused; nothing changed."""


class NonceError(ScanError, errors.Forbidden):
    """The QR's nonce is malformed, forged, for another cabinet or too old."""


class RateLimited(ScanError, errors.RateLimited):
    """Too many one-time codes asked for; try again after `retry_after_s`."""


class OtpRefused(ScanError, errors.Unauthenticated):
    """The one-time code is wrong, expired, used or locked (`outcome`)."""

    def __init__(self, message: str, *, outcome: OtpCheck | None) -> None:
        super().__init__(message)
        self.outcome = outcome


class TokenError(ScanError, errors.Forbidden):
    """The session token is malformed, forged, expired or for another cabinet."""


class NotOpenable(ScanError, errors.Conflict):
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


def cabinet_credentials_ok(*, session: Session, cab: str, username: str, password: str) -> bool:
    """Whether (`username`, `password`) are cabinet `cab`'s own: its id and its MQTT password.

    What the cabinet already holds, checked against the hash the registry stores (the broker's
    `password_file` line): fetching a nonce then means being the cabinet, not just knowing its id.
    """
    from cloud.services.registry import verify_mosquitto_password

    cabinet = get_cabinet(session=session, cab=cab)
    session.rollback()
    if cabinet is None or not cabinet.mqtt_password_hash:
        return False
    # Both checks always run: compare_digest for the name, the hash for the password.
    same_name = hmac.compare_digest(username.encode(), cab.encode())
    return verify_mosquitto_password(password, cabinet.mqtt_password_hash) and same_name


def ensure_cabinet(*, session: Session, cab: str) -> None:
    """Raise UnknownCabinet unless `cab` is registered."""
    if get_cabinet(session=session, cab=cab) is None:
        raise errors.UnknownCabinet(f"no cabinet {cab!r}")


# --- one-time codes -------------------------------------------------------------------------------


def guess_bound(*, tries: int = TRIES_PER_CABINET_DAY) -> float:
    """Return the most a guesser who may type `tries` wrong codes wins: the union bound.

    A code is uniform over 10**OTP_LENGTH values; a guess after k wrong ones at the same code wins
    with probability 1 / (10**OTP_LENGTH - k), and k < OTP_MAX_ATTEMPTS.
    """
    return tries / (10**OTP_LENGTH - OTP_MAX_ATTEMPTS + 1)


def nonce_hash(nonce: str) -> str:
    """Name a nonce in the limits' log without keeping a usable one."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class OtpRequested:
    """What the page is told after asking for a code (the same whoever the phone is)."""

    expires_at: datetime


def request_otp(
    *,
    session: Session,
    secret_key: bytes,
    cab: str,
    nonce: str,
    phone: str,
    now: datetime,
    client: str | None = None,
    randbelow: RandBelow = secrets.randbelow,
    language: Language | None = None,
) -> OtpRequested:
    """Queue a one-time code for `phone` (E.164) if it has a live parcel in `cab`; commit.

    The text goes through the notice outbox (the dispatcher sends it by SMS only), not from
    here: the answer must take as long, and run the same statements, whether or not the phone
    has a parcel. `language` is the page's: the person reads the text in it (None: the
    recipient's language by the site and the number). Raise NonceError, UnknownCabinet or
    RateLimited, changing nothing.
    """
    check_nonce(secret_key=secret_key, cab=cab, nonce=nonce, now=now)
    nonce_name = nonce_hash(nonce)
    _begin_write(session)
    try:
        _lock_cabinet(session=session, cab=cab)
        _check_otp_rate(
            session=session, cab=cab, phone=phone, client=client, nonce_name=nonce_name, now=now
        )
        code, record = issue_one_time_code(
            phone=phone, randbelow=randbelow, key=_subkey(secret_key, _OTP_PURPOSE), now=now
        )
        parcel_ids = scan.live_parcel_ids(session=session, cab=cab, phone=phone)
        key = f"scan-otp/{cab}/{secrets.token_hex(12)}"
        scan.queue_code_text(
            session=session,
            cab=cab,
            phone=phone,
            key=key,
            sealed=seal(secret_key, code, context=key),
            expires_at=record.expires_at,
            now=now,
            language=language.value if language else None,
        )
        session.add(
            ScanOtp(
                cabinet_id=cab,
                phone=phone,
                code_hash=record.code_hash,
                expires_at=record.expires_at,
                attempts_left=record.attempts_left,
                sent=bool(parcel_ids),
                client=_client(client),
                nonce_hash=nonce_name,
                parcel_ids=parcel_ids,
                created_at=now,
            )
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    log.info("scan-to-open code asked for %s at %s", mask_phone(phone), cab)
    return OtpRequested(expires_at=record.expires_at)


def _client(client: str | None) -> str | None:
    return client[:CLIENT_LENGTH] if client else None


def _lock_cabinet(*, session: Session, cab: str) -> None:
    """Lock the cabinet's row for this transaction, or raise UnknownCabinet.

    Requests at one cabinet then count and write their limits' log one after the other (SQLite
    serialises all writers anyway; PostgreSQL would otherwise let two count the same total).
    `FOR NO KEY UPDATE`, as `cabinets.lock_cabinets`: rows that merely refer to the cabinet (another
    transaction's command or event insert) do not wait for it, so no lock cycle with them.
    """
    if not scan.lock_cabinet_key_share(session=session, cab=cab):
        raise errors.UnknownCabinet(f"no cabinet {cab!r}")


def _check_otp_rate(
    *,
    session: Session,
    cab: str,
    phone: str,
    client: str | None,
    nonce_name: str,
    now: datetime,
) -> None:
    since = now - timedelta(seconds=OTP_WINDOW_S)
    minutes = OTP_WINDOW_S // 60
    if scan.codes_asked(session=session, since=since, phone=phone) >= OTP_PER_PHONE:
        raise RateLimited(
            f"too many codes asked for this number; try again in {minutes} minutes",
            retry_after_s=OTP_WINDOW_S,
        )
    if scan.codes_asked(session=session, since=since, texted_at=cab) >= OTP_PER_CABINET:
        raise RateLimited(
            f"too many codes asked for at this cabinet; try again in {minutes} minutes",
            retry_after_s=OTP_WINDOW_S,
        )
    if client and scan.codes_asked(session=session, since=since, client=_client(client)) >= (
        OTP_PER_CLIENT
    ):
        raise RateLimited(
            f"too many codes asked for from this address; try again in {minutes} minutes",
            retry_after_s=OTP_WINDOW_S,
        )
    if scan.codes_asked_with_nonce(session=session, nonce_hash=nonce_name) >= OTP_PER_NONCE:
        raise RateLimited(
            "too many codes asked for with this QR code: scan the cabinet's screen again",
            retry_after_s=NONCE_REFRESH_S,
        )


def _check_try_rate(
    *, session: Session, cab: str, client: str | None, nonce_name: str, now: datetime
) -> None:
    """Raise RateLimited once the wrong codes allowed are spent (the code is not even checked)."""
    since = now - timedelta(seconds=TRIES_WINDOW_S)
    if scan.wrong_tries(session=session, nonce_hash=nonce_name) >= TRIES_PER_NONCE:
        raise RateLimited(
            f"{TRIES_PER_NONCE} wrong codes with this QR code: scan the cabinet's screen again",
            retry_after_s=NONCE_REFRESH_S,
        )
    if client and scan.wrong_tries(session=session, since=since, client=_client(client)) >= (
        TRIES_PER_CLIENT_DAY
    ):
        raise RateLimited(
            "too many wrong codes from this address today: use the pickup code from the SMS",
            retry_after_s=TRIES_WINDOW_S,
        )
    if scan.wrong_tries(session=session, since=since, cab=cab) >= TRIES_PER_CABINET_DAY:
        oldest = scan.oldest_wrong_try(session=session, cab=cab, since=since)
        wait_s = TRIES_WINDOW_S
        if oldest is not None:
            wait_s = max(1, int((_aware_utc(oldest) - since).total_seconds()) + 1)
        log.warning("scan-to-open at %s: the day's wrong codes are spent", cab)
        raise RateLimited(
            "scan-to-open is paused at this cabinet after too many wrong codes: "
            "use the pickup code from the SMS on the keypad",
            retry_after_s=wait_s,
        )


def _aware_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
    client: str | None = None,
    bind_openid: str | None = None,
) -> ScanSession:
    """Check `code` for `phone` at `cab`; return a session token; commit the try either way.

    The session lists only the parcels the code was asked for (and still in the locker here).
    `bind_openid` (from a WeChat sign-in's bind ticket) is bound to the phone once it is proven;
    a WeChat user it replaces is told first (`_rebind`). Raise NonceError, UnknownCabinet,
    RateLimited (no try made) or OtpRefused (a wrong try is counted and committed).
    """
    check_nonce(secret_key=secret_key, cab=cab, nonce=nonce, now=now, ttl_s=VERIFY_NONCE_TTL_S)
    nonce_name = nonce_hash(nonce)
    _begin_write(session)
    try:
        _lock_cabinet(session=session, cab=cab)
        _check_try_rate(session=session, cab=cab, client=client, nonce_name=nonce_name, now=now)
        row = scan.lock_latest_code(session=session, cab=cab, phone=phone)
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
        if after.attempts_left < record.attempts_left:  # a code was compared, and was wrong
            session.add(
                ScanTry(cabinet_id=cab, client=_client(client), nonce_hash=nonce_name, at=now)
            )
        if outcome is not OtpCheck.OK:
            session.commit()  # the wrong try must count even though the request fails
            log.info("scan-to-open code for %s at %s: %s", mask_phone(phone), cab, outcome.value)
            raise OtpRefused(_OTP_MESSAGES[outcome], outcome=outcome)
        asked = list(row.parcel_ids or [])
        parcels = scan.live_parcels_among(session=session, cab=cab, phone=phone, row_ids=asked)
        if bind_openid is not None and asked:
            _rebind(session=session, openid=bind_openid, phone=phone, parcel=asked[0], now=now)
            log.info("WeChat user bound to %s at cabinet %s", mask_phone(phone), cab)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    token, expires_at = phone_token(
        secret_key=secret_key, cab=cab, phone=phone, parcels=parcels, now=now
    )
    return ScanSession(token=token, expires_at=expires_at, parcels=parcels)


def _rebind(*, session: Session, openid: str, phone: str, parcel: str, now: datetime) -> None:
    """Bind `openid` to `phone`; first queue a notice to each WeChat user bound to it before.

    The notice names its WeChat user (`to_openid`), so it reaches the old binding even though
    the dispatcher sends it after this commit; it is written before the old bindings go, in the
    same transaction: no rebinding without its notice. The old bindings go, so the replaced
    user can no longer sign in to scan-to-open as this phone. `parcel` (one the proven code was
    asked for) gives the notice its cabinet and site.
    """
    previous = scan.other_bindings(session=session, phone=phone, openid=openid)
    for old in previous:
        key = f"wechat-rebound/{secrets.token_hex(12)}"
        session.add(
            NoticeOutbox(
                dedupe_key=key,
                parcel_row_id=parcel,
                kind=NoticeKind.WECHAT_REBOUND.value,
                audience=Audience.RECIPIENT.value,
                to_phone=phone,
                to_openid=old.openid,
                deadline=now,
                channel=Channel.WECHAT.value,
                next_attempt_at=now,
                created_at=now,
            )
        )
        log.info("WeChat binding of %s replaced: the old WeChat user is told", mask_phone(phone))
    session.flush()  # the notices first
    for old in previous:
        session.delete(old)
    session.flush()
    bind_wechat(session=session, openid=openid, phone=phone, now=now)


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
    rows = scan.in_locker_by_parcel_id(session=session, cab=cab, parcel_ids=claims.parcel_ids)
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
        row = scan.lock_parcel_by_parcel_id(session=session, parcel_id=parcel_id)
        if row is None or row.cabinet_id != cab:
            raise NotOpenable(f"parcel {parcel_id!r} is not in cabinet {cab!r}")
        if row.status != Status.IN_LOCKER.value or row.compartment is None:
            raise NotOpenable(f"parcel {parcel_id!r} is no longer in the locker ({row.status})")
        data = OpenCompartmentData(
            compartment=row.compartment, reason=OPEN_REASON, actor=claims.actor
        )
        command = enqueue_command(
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


# A day and a code's life outlast every rate-limit window (the tries' day included).
OTP_KEEP_S = TRIES_WINDOW_S + OTP_TTL_S


def forget_old_otps(*, session: Session, now: datetime) -> int:
    """Delete one-time-code and wrong-try rows older than OTP_KEEP_S; commit; return how many."""
    if session.in_transaction():
        session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    before = now - timedelta(seconds=OTP_KEEP_S)
    codes = delete_older_than(session=session, column=ScanOtp.__table__.c.created_at, before=before)
    if session.in_transaction():
        session.rollback()
    return codes + delete_older_than(session=session, column=ScanTry.__table__.c.at, before=before)


def _begin_write(session: Session) -> None:
    if session.in_transaction():
        session.rollback()  # a write transaction must begin fresh (BEGIN IMMEDIATE on SQLite)
    write_session(session)
