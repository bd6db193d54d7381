"""Who a console request comes from, and the checks every console route makes.

- `ConsoleUserDep`: the signed-in account (cloud.services.console_auth.ConsoleUser, with its
  policy `principal`); no live session redirects (303) to the sign-in page, which comes back.
- `CsrfFormDep`: a POST's `csrf` form field must equal the session's token (403 otherwise).
- `check(user, action, resource)`: cloud.core.access.decide, with a refusal rendered as the
  console's 404 or 403 page (`ConsoleRefusal`); a resource out of scope is the same 404 as a
  missing one.

The session cookie is HttpOnly, Secure and SameSite=Lax, scoped to /console. Browsers keep
Secure cookies over plain HTTP only for localhost (the demo); production serves HTTPS.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Form, HTTPException, Request, status
from fastapi.responses import Response

from cloud.api.deps import NowDep, SessionDep
from cloud.core.access import Action, Resource, decide
from cloud.services.console_auth import ConsoleUser, session_user

COOKIE = "console_session"
COOKIE_PATH = "/console"
SIGN_IN = "/console/sign-in"
HOME = "/console/fleet"


class ConsoleRefusal(Exception):
    """A console request refused: rendered as the console's error page (404, 403) in the
    user's language, `key` naming its words (cloud/console/i18n)."""

    def __init__(self, status_code: int, key: str, user: ConsoleUser | None) -> None:
        super().__init__(key)
        self.status_code = status_code
        self.key = key
        self.user = user


def safe_next(target: str | None, default: str = HOME) -> str:
    """Where to go after signing in: a console path only (never another site: no open
    redirect), else `default`."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return default


def get_console_user(request: Request, session: SessionDep, now: NowDep) -> ConsoleUser:
    user = session_user(session=session, token=request.cookies.get(COOKIE), now=now)
    if user is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise HTTPException(
            status.HTTP_303_SEE_OTHER,
            "sign in first",
            headers={"Location": f"{SIGN_IN}?next={quote(here, safe='')}"},
        )
    return user


ConsoleUserDep = Annotated[ConsoleUser, Depends(get_console_user)]


def check_csrf(user: ConsoleUserDep, csrf: Annotated[str, Form(max_length=100)] = "") -> None:
    if not hmac.compare_digest(csrf.encode(), user.csrf_token.encode()):
        raise ConsoleRefusal(status.HTTP_403_FORBIDDEN, "csrf.refused", user)


CsrfFormDep = Annotated[None, Depends(check_csrf)]


def check(user: ConsoleUser, action: Action, resource: Resource | None) -> None:
    """Go on if `decide` allows; raise ConsoleRefusal (a 404 or 403 page) if not."""
    decision = decide(user.principal, action, resource)
    if decision.allowed:
        return
    if decision.http_status == status.HTTP_404_NOT_FOUND:
        raise ConsoleRefusal(status.HTTP_404_NOT_FOUND, "error.not_found", user)
    raise ConsoleRefusal(status.HTTP_403_FORBIDDEN, "error.forbidden", user)


def set_session_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, path=COOKIE_PATH, httponly=True, secure=True, samesite="lax")


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, secure=True, samesite="lax")
