"""`/console/sign-in` and `/console/sign-out`: the sign-in form, its check, the session cookie.

The form has no session yet, so its CSRF token is a double-submit one: a random value in a
SameSite=Strict cookie that the form's hidden field must repeat (another site can make the
browser post, but cannot read or set that cookie).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response

from cloud.api.deps import NowDep, SessionDep, SettingsDep
from cloud.console import auth
from cloud.console.nav import home_for
from cloud.console.web import render
from cloud.services import console_auth

router = APIRouter(include_in_schema=False)

FORM_COOKIE = "console_form"


def _form(
    request: Request, *, message: str = "", next_path: str = "", status_code: int = 200,
    username: str = "",
) -> Response:  # fmt: skip
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "sign_in.html",
        user=None,
        csrf=token,
        message=message,
        next_path=auth.safe_next(next_path, default=""),
        username=username,
        status_code=status_code,
    )
    response.set_cookie(
        FORM_COOKIE, token, path=auth.COOKIE_PATH, httponly=True, secure=True, samesite="strict"
    )
    return response


@router.get("/console")
def console_root() -> RedirectResponse:
    return RedirectResponse(auth.HOME, status_code=status.HTTP_303_SEE_OTHER)


@router.get("/console/sign-in")
def sign_in_page(request: Request, next: str = "", note: str = "") -> Response:
    message = {"out": "signin.signed_out", "expired": "signin.expired"}.get(note, "")
    return _form(request, message=message, next_path=next)


@router.post("/console/sign-in")
def sign_in(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    username: Annotated[str, Form(max_length=120)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    totp: Annotated[str, Form(max_length=12)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    expected = request.cookies.get(FORM_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf.encode(), expected.encode()):
        return _form(
            request, message="signin.csrf", next_path=next, username=username,
            status_code=status.HTTP_403_FORBIDDEN,
        )  # fmt: skip
    address = request.client.host if request.client else "unknown"
    try:
        signed = console_auth.sign_in(
            session=session,
            username=username.strip(),
            password=password,
            totp_code=totp,
            address=address,
            now=now,
            secret_key=settings.secret_key_bytes,
        )
    except console_auth.SignInLocked as exc:
        response = _form(
            request,
            message="signin.locked",
            next_path=next,
            username=username,
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except console_auth.SignInRefused:
        return _form(
            request, message="signin.refused", next_path=next, username=username,
            status_code=status.HTTP_401_UNAUTHORIZED,
        )  # fmt: skip
    home = home_for(signed.principal)
    response = RedirectResponse(auth.safe_next(next, home), status_code=status.HTTP_303_SEE_OTHER)
    auth.set_session_cookie(response, signed.token)
    response.delete_cookie(FORM_COOKIE, path=auth.COOKIE_PATH)
    return response


@router.post("/console/sign-out")
def sign_out(
    session: SessionDep, now: NowDep, user: auth.ConsoleUserDep, _csrf: auth.CsrfFormDep
) -> Response:
    console_auth.sign_out(session=session, user=user, now=now)
    response = RedirectResponse(f"{auth.SIGN_IN}?note=out", status_code=status.HTTP_303_SEE_OTHER)
    auth.clear_session_cookie(response)
    return response
