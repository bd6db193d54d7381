"""WeChat official-account template messages over WeChat's HTTP API (httpx), token cached.

The access token comes from `/cgi-bin/token` and is kept until shortly before `expires_in` runs
out (WeChat allows only so many token fetches a day, and a new token retires the old one after a
grace period); a send answered with 40001/40014/42001 (token invalid or expired) fetches a new one
and is tried once more. Template messages go to `/cgi-bin/message/template/send`. WeChat answers
errors as HTTP 200 with a non-zero `errcode`: they are sorted here into retryable and permanent.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from cloud.notify.errors import AmbiguousSendError, PermanentSendError, RetryableSendError
from cloud.notify.ports import OutgoingMessage, SendReceipt
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
# Refresh this long before WeChat's stated expiry, so a token never dies in flight.
TOKEN_MARGIN_S = 300

TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # invalid, malformed, expired access token
# Busy, rate limited (per minute / per day): the same message may go later.
RETRYABLE_ERRCODES = frozenset({-1, 45009, 45011, 45047})

Clock = Callable[[], float]  # seconds, monotonic

_SECRET_PARAMS = re.compile(r"\b(access_token|secret)=[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """Blank the app secret and access token out of URLs that httpx logs.

    WeChat takes both in the query string, and httpx logs every request URL at INFO.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _SECRET_PARAMS.sub(r"\1=***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


class WechatTemplates:
    """Send template messages to WeChat users (openids) of one official account."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        template_id: str,
        base_url: str = "https://api.weixin.qq.com",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Clock = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _redact_httpx_logs()
        self.app_id = app_id
        self.template_id = template_id
        self._app_secret = app_secret
        self._clock = clock
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at_s = 0.0  # on `clock`
        self.token_fetches = 0

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> WechatTemplates:
        """Build the sender the settings describe."""
        return cls(
            app_id=settings.wechat_app_id,
            app_secret=settings.wechat_app_secret.get_secret_value(),
            template_id=settings.wechat_template_id,
            base_url=settings.wechat_base_url,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def send(self, message: OutgoingMessage) -> SendReceipt:
        """Send one template message; raise a `SendError` subclass saying what may come next."""
        payload: dict[str, Any] = {
            "touser": message.to,
            "template_id": self.template_id,
            "data": {"content": {"value": message.text}},
        }
        if message.link:
            payload["url"] = message.link
        answer = self._post_template(payload, self.access_token())
        if answer.get("errcode") in TOKEN_ERRCODES:
            stale = self._token
            self.invalidate_token(stale)
            answer = self._post_template(payload, self.access_token())
        errcode = answer.get("errcode", 0)
        if errcode == 0:
            return SendReceipt(provider_id=str(answer.get("msgid", "")), status="sent")
        raise _classified(errcode, answer.get("errmsg", ""))

    # --- the access token ------------------------------------------------------------------------

    def access_token(self) -> str:
        """Return a live access token, fetching one if none is cached or it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._token_expires_at_s:
                self._fetch_token()
            assert self._token is not None
            return self._token

    def invalidate_token(self, token: str | None) -> None:
        """Forget `token` (if it is still the cached one): WeChat said it is no longer good."""
        with self._lock:
            if token is not None and token == self._token:
                self._token = None

    def _fetch_token(self) -> None:
        params = {
            "grant_type": "client_credential",
            "appid": self.app_id,
            "secret": self._app_secret,
        }
        try:
            response = self._http.get("/cgi-bin/token", params=params)
        except httpx.HTTPError as err:
            # Fetching a token sends nothing to anyone: any failure is safe to retry.
            raise RetryableSendError(f"WeChat token fetch failed: {type(err).__name__}") from None
        self.token_fetches += 1
        answer = _json(response)
        token = answer.get("access_token")
        if not token:
            errcode = answer.get("errcode", -1)
            error = _classified(errcode, f"token: {answer.get('errmsg', '')}")
            # Bad app id or secret, IP not whitelisted: no retry fixes the configuration.
            raise error
        self._token = token
        expires_in_s = int(answer.get("expires_in", 7200))
        self._token_expires_at_s = self._clock() + max(0, expires_in_s - TOKEN_MARGIN_S)

    # --- sending ---------------------------------------------------------------------------------

    def _post_template(self, payload: dict[str, Any], token: str) -> dict[str, Any]:
        try:
            response = self._http.post(
                "/cgi-bin/message/template/send", params={"access_token": token}, json=payload
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise RetryableSendError(f"WeChat unreachable: {type(err).__name__}") from None
        except httpx.HTTPError as err:
            # The request may have reached WeChat: a second one could send twice.
            raise AmbiguousSendError(f"WeChat did not answer: {type(err).__name__}") from None
        return _json(response)


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 500:
        raise RetryableSendError(f"WeChat HTTP {response.status_code}")
    try:
        answer = response.json()
    except ValueError:
        raise RetryableSendError(f"WeChat HTTP {response.status_code}: not JSON") from None
    if not isinstance(answer, dict):
        raise RetryableSendError(f"WeChat HTTP {response.status_code}: unexpected answer")
    return answer


def _classified(errcode: int, errmsg: str) -> RetryableSendError | PermanentSendError:
    text = f"WeChat errcode {errcode}: {errmsg}"
    if errcode in RETRYABLE_ERRCODES or errcode in TOKEN_ERRCODES:
        # A token refused right after a fresh fetch: WeChat's side, try later.
        return RetryableSendError(text, code=errcode)
    return PermanentSendError(text, code=errcode)
