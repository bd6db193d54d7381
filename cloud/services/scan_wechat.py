"""Scan-to-open's WeChat sign-in: the official account's webpage authorization instead of an SMS.

The flow (issue 4 item 6, "WeChat sign-in"), for a recipient who scanned the QR with WeChat:

1. the page links to `GET /api/v1/scan/{cab}/{nonce}/wechat`, which checks the QR's nonce, sets
   a random browser cookie and redirects to WeChat's authorize page with a `state` that carries
   the nonce and an HMAC of (cab, nonce, cookie) (`make_state`): WeChat's `state` is
   `[A-Za-z0-9]{1,128}`, so the nonce travels hex-encoded;
2. WeChat sends the browser back to `/api/v1/scan/{cab}/wechat/callback?code=…&state=…`;
   `sign_in` checks the state against this browser's cookie (a state made for another browser,
   or forged, is refused: the CSRF guard), the nonce's age, trades the code for the openid, and
   maps the openid to its bound phone (`wechat_bindings`);
3. bound: the same signed session token as the SMS path (`scan_open.make_token`), listing the
   phone's live parcels in the cabinet, so opening is the same request; not bound: a signed,
   short-lived bind ticket for the openid instead, which the page hands to the SMS path's
   `verify` so the phone proven there is bound to this WeChat user for next time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from cloud import errors
from cloud.db.parcels import live_parcels
from cloud.db.wechat import phone_for_openid
from cloud.notify.wechat_oauth import WechatOAuth, WechatSignInError
from cloud.services.scan_open import (
    VERIFY_NONCE_TTL_S,
    NonceError,
    ScanError,
    TokenError,
    _from_unix,
    _subkey,
    check_nonce,
    ensure_cabinet,
    phone_token,
    sign_claims,
    verify_claims,
)

_STATE_PURPOSE = b"locker-scan-wechat-state-v1"
_TICKET_PURPOSE = b"locker-scan-wechat-bind-v1"
_STATE_MAC_HEX = 32  # 128 bits
BIND_TICKET_TTL_S = 15 * 60  # time enough to ask for an SMS code and type it
BROWSER_COOKIE = "locker_scan_browser"


class WechatUnavailable(ScanError, errors.Unavailable):
    """WeChat sign-in is not configured, or WeChat would not say who the user is."""


@dataclass(frozen=True)
class WechatSignIn:
    """The outcome of a sign-in: a session token (bound) or a bind ticket (not yet bound)."""

    nonce: str
    token: str | None = None
    expires_at: datetime | None = None
    bind_ticket: str | None = None


def make_state(*, secret_key: bytes, cab: str, nonce: str, browser: str) -> str:
    """Return the OAuth `state` for this scan and browser: `<hex nonce>x<hex MAC>`."""
    mac = hmac.new(
        _subkey(secret_key, _STATE_PURPOSE), f"{cab}|{nonce}|{browser}".encode(), "sha256"
    ).hexdigest()[:_STATE_MAC_HEX]
    return f"{nonce.encode().hex()}x{mac}"


def check_state(*, secret_key: bytes, cab: str, state: str, browser: str | None) -> str:
    """Return the nonce `state` carries, or raise NonceError if it is not this browser's."""
    nonce_hex, _, mac = state.partition("x")
    try:
        nonce = bytes.fromhex(nonce_hex).decode()
    except ValueError:
        raise NonceError("the WeChat sign-in's state is malformed: scan again") from None
    if not browser:
        raise NonceError("this browser did not start the WeChat sign-in: scan again")
    expected = make_state(secret_key=secret_key, cab=cab, nonce=nonce, browser=browser)
    if not mac or not hmac.compare_digest(expected, state):
        raise NonceError("the WeChat sign-in was not started here: scan the screen again")
    return nonce


def sign_in(
    *,
    session: Session,
    oauth: WechatOAuth | None,
    secret_key: bytes,
    cab: str,
    state: str,
    browser: str | None,
    code: str,
    now: datetime,
) -> WechatSignIn:
    """Finish the WeChat sign-in; raise NonceError, UnknownCabinet or WechatUnavailable."""
    nonce = check_state(secret_key=secret_key, cab=cab, state=state, browser=browser)
    check_nonce(secret_key=secret_key, cab=cab, nonce=nonce, now=now, ttl_s=VERIFY_NONCE_TTL_S)
    if oauth is None:
        raise WechatUnavailable("WeChat sign-in is not configured on this server")
    ensure_cabinet(session=session, cab=cab)
    session.rollback()  # no transaction held open across WeChat's answer
    try:
        openid = oauth.openid_for_code(code)
    except WechatSignInError as err:
        raise WechatUnavailable(f"WeChat sign-in failed: {err}") from None
    phone = phone_for_openid(session=session, openid=openid)
    if phone is None:
        session.rollback()
        ticket = make_bind_ticket(
            secret_key=secret_key,
            cab=cab,
            openid=openid,
            expires_at=now + timedelta(seconds=BIND_TICKET_TTL_S),
        )
        return WechatSignIn(nonce=nonce, bind_ticket=ticket)
    parcels = live_parcels(session=session, cab=cab, phone=phone)
    session.rollback()
    token, expires_at = phone_token(
        secret_key=secret_key, cab=cab, phone=phone, parcels=parcels, now=now
    )
    return WechatSignIn(nonce=nonce, token=token, expires_at=expires_at)


def make_bind_ticket(*, secret_key: bytes, cab: str, openid: str, expires_at: datetime) -> str:
    """Return a signed ticket: this openid may be bound to the phone proven next at `cab`."""
    claims = {"cab": cab, "openid": openid, "exp": int(expires_at.timestamp())}
    return sign_claims(secret_key, _TICKET_PURPOSE, claims)


def check_bind_ticket(*, secret_key: bytes, ticket: str, cab: str, now: datetime) -> str:
    """Return the openid a bind ticket names, or raise TokenError."""
    claims = verify_claims(secret_key, _TICKET_PURPOSE, ticket, "the WeChat link ticket")
    try:
        claimed_cab, openid, expires_s = str(claims["cab"]), str(claims["openid"]), claims["exp"]
    except (ValueError, KeyError, TypeError):
        raise TokenError("the WeChat link ticket is malformed") from None
    if claimed_cab != cab:
        raise TokenError("the WeChat link ticket is for another cabinet")
    if now >= _from_unix(int(expires_s)):
        raise TokenError("the WeChat link ticket has expired: sign in with WeChat again")
    return openid
