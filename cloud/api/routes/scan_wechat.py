"""`/scan/{cab}/.../wechat`: scan-to-open's WeChat sign-in (webpage authorization, snsapi_base).

Two redirects (`cloud.services.scan_wechat` has the flow): the page's "WeChat" link goes to
`start`, which sends the browser to WeChat's authorize page; WeChat sends it back to `callback`,
which sends it to the scan page with the outcome in the URL fragment (`#session=<token>` or
`#bind=<ticket>`; a fragment never reaches a server or its logs).
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Cookie, Query, Request, status
from fastapi.responses import RedirectResponse

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.api.routes.scan import CabinetId, Nonce
from cloud.api.schemas import json_error_responses
from cloud.notify.wechat_oauth import WechatOAuth
from cloud.services import scan_open, scan_wechat

router = APIRouter(prefix="/scan", tags=["scan-to-open"])

CALLBACK_PATH = "/api/v1/scan/{cab}/wechat/callback"


def _oauth(request: Request) -> WechatOAuth | None:
    return request.app.state.wechat_oauth


def _redirect_doc(to: str) -> dict[int | str, dict[str, object]]:
    return {
        status.HTTP_303_SEE_OTHER: {
            "description": f"Redirect to {to}",
            "headers": {"Location": {"schema": {"type": "string"}, "description": to}},
        }
    }


@router.get(
    "/{cab}/{nonce}/wechat",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={
        **_redirect_doc("WeChat's authorize page"),
        **json_error_responses(403, 404, 422, 503),
    },
)
def start(
    cab: CabinetId,
    nonce: Nonce,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
) -> RedirectResponse:
    """Start the WeChat sign-in: send the browser to WeChat's authorize page (`snsapi_base`)."""
    oauth = _oauth(request)
    scan_open.check_nonce(secret_key=settings.secret_key_bytes, cab=cab, nonce=nonce, now=now)
    scan_open.ensure_cabinet(session=session, cab=cab)
    if oauth is None:
        raise scan_wechat.WechatUnavailable("WeChat sign-in is not configured on this server")
    browser = secrets.token_urlsafe(18)
    state = scan_wechat.make_state(
        secret_key=settings.secret_key_bytes, cab=cab, nonce=nonce, browser=browser
    )
    redirect_uri = settings.base_url.rstrip("/") + CALLBACK_PATH.format(cab=cab)
    response = RedirectResponse(
        oauth.authorize_url(redirect_uri=redirect_uri, state=state),
        status_code=status.HTTP_303_SEE_OTHER,
    )
    # Lax: sent on the top-level GET that WeChat redirects back with, not on other sites' posts.
    response.set_cookie(
        scan_wechat.BROWSER_COOKIE,
        browser,
        max_age=scan_open.VERIFY_NONCE_TTL_S,
        path="/api/v1/scan",
        secure=settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


@router.get(
    "/{cab}/wechat/callback",
    status_code=status.HTTP_303_SEE_OTHER,
    response_class=RedirectResponse,
    responses={
        **_redirect_doc("the scan page, with #session=<token> or #bind=<ticket>"),
        **json_error_responses(403, 404, 422, 503),
    },
)
def callback(
    cab: CabinetId,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    state: Annotated[str, Query(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9]+$")],
    code: Annotated[str | None, Query(max_length=256)] = None,
    browser: Annotated[str | None, Cookie(alias=scan_wechat.BROWSER_COOKIE)] = None,
) -> RedirectResponse:
    """WeChat's redirect back: sign the recipient in by their bound phone, as the SMS path does."""
    if code is None:  # the user declined; back to the page, where the SMS path still works
        nonce = scan_wechat.check_state(
            secret_key=settings.secret_key_bytes, cab=cab, state=state, browser=browser
        )
        return _to_page(settings.base_url, cab, nonce, "wechat=declined")
    signed = scan_wechat.sign_in(
        session=session,
        oauth=_oauth(request),
        secret_key=settings.secret_key_bytes,
        cab=cab,
        state=state,
        browser=browser,
        code=code,
        now=now,
    )
    if signed.token is not None:
        fragment = "session=" + quote(signed.token, safe="")
    else:
        fragment = "bind=" + quote(signed.bind_ticket or "", safe="")
    response = _to_page(settings.base_url, cab, signed.nonce, fragment)
    response.delete_cookie(scan_wechat.BROWSER_COOKIE, path="/api/v1/scan")
    return response


def _to_page(base_url: str, cab: str, nonce: str, fragment: str) -> RedirectResponse:
    url = scan_open.scan_url(base_url, cab, nonce) + "#" + fragment
    response = RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
