"""A local fake of the WeChat official-account API: access tokens and template messages.

It answers like `api.weixin.qq.com`: `GET /cgi-bin/token?grant_type=client_credential&appid=…
&secret=…` gives `{"access_token", "expires_in"}`; `POST /cgi-bin/message/template/send
?access_token=…` takes `{"touser", "template_id", "url", "data"}` and gives `{"errcode": 0,
"errmsg": "ok", "msgid"}`. Errors are HTTP 200 with a non-zero `errcode` and an `errmsg`, as
WeChat's are. Tokens can be expired at will (42001) and failures injected.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from cloud.fakes._http import FakeServer, Request

ERRMSG = {
    -1: "system error",
    40002: "invalid grant_type",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
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

    def sent_to(self, openid: str) -> list[ReceivedTemplate]:
        """Return the template messages accepted for `openid`."""
        with self.lock:
            return [m for m in self.messages if m.touser == openid]

    # --- the API ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, Any]:
        if request.method == "GET" and request.path == "/cgi-bin/token":
            return 200, self._token(request)
        if request.method == "POST" and request.path == "/cgi-bin/message/template/send":
            return 200, self._send(request)
        return 404, _error(-1)

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
