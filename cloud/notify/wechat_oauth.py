"""WeChat webpage authorization (OAuth2 of the official account) over WeChat's HTTP API (httpx).

Two steps, as WeChat documents them for `snsapi_base` (silent: only the openid is learned):

1. `authorize_url(redirect_uri, state)`: send the browser to
   `{open_base}/connect/oauth2/authorize?appid=…&redirect_uri=…&response_type=code
   &scope=snsapi_base&state=…#wechat_redirect`; WeChat sends it back to `redirect_uri?code=…
   &state=…`;
2. `openid_for_code(code)`: `GET {api_base}/sns/oauth2/access_token?appid&secret&code
   &grant_type=authorization_code` gives the user's `openid` (the web access token it also
   gives is not needed for `snsapi_base` and is dropped).
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from cloud.notify.wechat import DEFAULT_TIMEOUT_S, _redact_httpx_logs
from cloud.settings import CloudSettings


class WechatSignInError(Exception):
    """WeChat did not give an openid for the code (bad, used or expired code; WeChat away)."""


class WechatOAuth:
    """The official account's webpage authorization: authorize URL, code -> openid."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        api_base_url: str = "https://api.weixin.qq.com",
        open_base_url: str = "https://open.weixin.qq.com",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _redact_httpx_logs()  # the app secret travels in the query string
        self.app_id = app_id
        self._app_secret = app_secret
        self.open_base_url = open_base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=api_base_url.rstrip("/"), timeout=timeout_s, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> WechatOAuth:
        """Build the client the settings describe."""
        return cls(
            app_id=settings.wechat_app_id,
            app_secret=settings.wechat_app_secret.get_secret_value(),
            api_base_url=settings.wechat_base_url,
            open_base_url=settings.wechat_open_base_url,
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def authorize_url(self, *, redirect_uri: str, state: str) -> str:
        """Return the URL that asks WeChat who the user is and sends them to `redirect_uri`."""
        query = urlencode(
            {
                "appid": self.app_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "snsapi_base",
                "state": state,
            }
        )
        return f"{self.open_base_url}/connect/oauth2/authorize?{query}#wechat_redirect"

    def openid_for_code(self, code: str) -> str:
        """Trade the code WeChat sent back for the user's openid; raise WechatSignInError."""
        params = {
            "appid": self.app_id,
            "secret": self._app_secret,
            "code": code,
            "grant_type": "authorization_code",
        }
        try:
            response = self._http.get("/sns/oauth2/access_token", params=params)
            answer = response.json()
        except (httpx.HTTPError, ValueError) as err:
            raise WechatSignInError(f"WeChat did not answer: {type(err).__name__}") from None
        openid = answer.get("openid") if isinstance(answer, dict) else None
        if not openid:
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            errmsg = answer.get("errmsg", "") if isinstance(answer, dict) else ""
            raise WechatSignInError(f"WeChat refused the sign-in code: {errcode} {errmsg}".strip())
        return str(openid)
