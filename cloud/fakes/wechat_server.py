"""A local fake of the WeChat official-account API: tokens, template messages, web sign-in.

It answers like `api.weixin.qq.com`: `GET /cgi-bin/token?grant_type=client_credential&appid=…
&secret=…` gives `{"access_token", "expires_in"}`; `POST /cgi-bin/message/template/send
?access_token=…` takes `{"touser", "template_id", "url", "data"}` and gives `{"errcode": 0,
"errmsg": "ok", "msgid"}`. Errors are HTTP 200 with a non-zero `errcode` and an `errmsg`, as
WeChat's are. Tokens can be expired at will (42001) and failures injected.

Webpage authorization (OAuth2, as `open.weixin.qq.com` and the `sns` API do it):
`GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state` is the page
WeChat shows inside its browser; the fake signs in as the user set with `sign_in_as(openid)`
and redirects (302) to `redirect_uri?code=…&state=…`, as WeChat does once the user agrees (for
`snsapi_base`, silently). `GET /sns/oauth2/access_token?appid&secret&code&grant_type=
authorization_code` trades that code, once, for `{"access_token",
"expires_in", "refresh_token", "openid", "scope"}`; a used or unknown code is 40163 / 40029.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import Any
from urllib.parse import urlencode

from cloud.fakes._http import FakeServer, Request

ERRMSG = {
    -1: "system error",
    40002: "invalid grant_type",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40029: "invalid code",
    40163: "code been used",
    10003: "redirect_uri domain mismatch",
    40013: "invalid appid",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    47001: "data format error",
}


@dataclass(frozen=True)
class ReceivedTemplate:
    """A template message the fake accepted."""

    msgid: int
    touser: str
    template_id: str
    url: str | None
    data: dict[str, Any] = field(repr=False)
    # When the fake accepted it (a real message's time is WeChat's; the notices page sorts by it).
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def text(self) -> str:
        """All the template's field values, in order, as one string."""
        return " ".join(str(item.get("value", "")) for item in self.data.values())


class FakeWechat(FakeServer):
    """WeChat's token and template-message API on 127.0.0.1; `messages` is what it accepted."""

    def __init__(
        self,
        *,
        app_id: str = "wx-test-app",
        app_secret: str | None = None,
        token_lifetime_s: int = 7200,
    ) -> None:
        super().__init__()
        self.app_id = app_id
        self.app_secret = app_secret or secrets.token_hex(16)
        self.token_lifetime_s = token_lifetime_s
        self.messages: list[ReceivedTemplate] = []
        self.token_requests = 0
        self.send_requests = 0
        self._live_tokens: set[str] = set()
        self._expired_tokens: set[str] = set()
        self._failures: deque[int] = deque()
        self._rejected: dict[str, int] = {}
        self._msgids = count(1_000_001)
        self.signed_in_openid: str | None = None  # who is using WeChat's browser
        self.oauth_codes: dict[str, str] = {}  # code -> openid, until traded
        self._used_codes: set[str] = set()

    # --- what tests and the demo drive ---------------------------------------------------------

    def expire_tokens(self) -> None:
        """Expire every token issued so far: the next send with one gets 42001."""
        with self.lock:
            self._expired_tokens |= self._live_tokens
            self._live_tokens.clear()

    def fail_next(self, count: int = 1, errcode: int = -1) -> None:
        """Make the next `count` template sends fail with `errcode` (-1: system busy)."""
        with self.lock:
            self._failures.extend([errcode] * count)

    def reject_openid(self, openid: str, errcode: int = 43004) -> None:
        """Refuse every message to `openid` (43004: the user does not follow the account)."""
        with self.lock:
            self._rejected[openid] = errcode

    def sign_in_as(self, openid: str | None) -> None:
        """Make the authorize page sign in as `openid` (None: the user declines)."""
        with self.lock:
            self.signed_in_openid = openid

    def sent_to(self, openid: str) -> list[ReceivedTemplate]:
        """Return the template messages accepted for `openid`."""
        with self.lock:
            return [m for m in self.messages if m.touser == openid]

    # --- the API ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[Any, ...]:
        if request.method == "GET" and request.path == "/cgi-bin/token":
            return 200, self._token(request)
        if request.method == "POST" and request.path == "/cgi-bin/message/template/send":
            return 200, self._send(request)
        if request.method == "GET" and request.path == "/connect/oauth2/authorize":
            return self._authorize(request)
        if request.method == "GET" and request.path == "/sns/oauth2/access_token":
            return 200, self._sns_token(request)
        return 404, _error(-1)

    def _authorize(self, request: Request) -> tuple[Any, ...]:
        query = request.query
        with self.lock:
            if query.get("appid") != self.app_id:
                return 200, _error(40013)
            redirect_uri = query.get("redirect_uri", "")
            if not redirect_uri.startswith(("http://", "https://")):
                return 200, _error(10003)
            if query.get("response_type") != "code" or query.get("scope") not in (
                "snsapi_base",
                "snsapi_userinfo",
            ):
                return 200, _error(-1)
            separator = "&" if "?" in redirect_uri else "?"
            state = urlencode({"state": query.get("state", "")})
            if self.signed_in_openid is None:  # declined: WeChat redirects without a code
                return 302, {}, {"Location": f"{redirect_uri}{separator}{state}"}
            code = secrets.token_urlsafe(24)
            self.oauth_codes[code] = self.signed_in_openid
        location = f"{redirect_uri}{separator}{urlencode({'code': code})}&{state}"
        return 302, {}, {"Location": location}

    def _sns_token(self, request: Request) -> dict[str, Any]:
        query = request.query
        with self.lock:
            if query.get("grant_type") != "authorization_code":
                return _error(40002)
            if query.get("appid") != self.app_id:
                return _error(40013)
            if query.get("secret") != self.app_secret:
                return _error(40125)
            code = query.get("code", "")
            if code in self._used_codes:
                return _error(40163)
            openid = self.oauth_codes.pop(code, None)
            if openid is None:
                return _error(40029)
            self._used_codes.add(code)
        return {
            "access_token": secrets.token_urlsafe(48),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(48),
            "openid": openid,
            "scope": "snsapi_base",
        }

    def _token(self, request: Request) -> dict[str, Any]:
        with self.lock:
            self.token_requests += 1
            if request.query.get("grant_type") != "client_credential":
                return _error(40002)
            if request.query.get("appid") != self.app_id:
                return _error(40013)
            if request.query.get("secret") != self.app_secret:
                return _error(40125)
            token = secrets.token_urlsafe(48)
            self._live_tokens.add(token)
            return {"access_token": token, "expires_in": self.token_lifetime_s}

    def _send(self, request: Request) -> dict[str, Any]:
        token = request.query.get("access_token", "")
        body = request.json()
        with self.lock:
            self.send_requests += 1
            if token in self._expired_tokens:
                return _error(42001)
            if token not in self._live_tokens:
                return _error(40001)
            if self._failures:
                return _error(self._failures.popleft())
            if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
                return _error(47001)
            touser, template_id = body.get("touser"), body.get("template_id")
            if not touser:
                return _error(40003)
            if not template_id:
                return _error(40037)
            if touser in self._rejected:
                return _error(self._rejected[touser])
            message = ReceivedTemplate(
                msgid=next(self._msgids),
                touser=touser,
                template_id=template_id,
                url=body.get("url"),
                data=body["data"],
            )
            self.messages.append(message)
        return {"errcode": 0, "errmsg": "ok", "msgid": message.msgid}


def _error(errcode: int) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": ERRMSG.get(errcode, "error")}
