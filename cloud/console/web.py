"""Rendering a console page: the Jinja2 templates, the page's language, the signed-in account.

Every page extends `templates/base.html` and is rendered with `render(request, name, user=...,
**context)`; the context always holds `t` (the translator), `lang`, `user` (None on the sign-in
page), `nav` (the header's links for the user's role), `csrf` (the token every POST form
carries in a hidden `csrf` field) and `path` (for the language switch to come back to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from cloud.console.nav import nav_for
from cloud.console.text import LANG_COOKIE, LANGUAGES, Translator, local_time, pick_language
from cloud.core.alarms import detail_text
from cloud.core.policies import Language
from cloud.services import alarms
from cloud.services.console_auth import ConsoleUser

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["local_time"] = local_time
templates.env.globals["LANGUAGES"] = LANGUAGES
# An alarm's stored (English) detail in the page's language: alarm_detail(kind, detail, lang).
templates.env.globals["alarm_detail"] = lambda kind, detail, lang: detail_text(
    kind, detail, Language(lang)
)

# Console pages hold personal data: never cached, never framed, never a referrer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def language(request: Request) -> str:
    return pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def translator(request: Request) -> Translator:
    return Translator(language(request))


def render(
    request: Request,
    name: str,
    *,
    user: ConsoleUser | None,
    status_code: int = 200,
    csrf: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render template `name` as a full page (or a fragment, for a template that extends none)."""
    t = translator(request)
    page = {
        "open_alarms": _open_alarms(request, user),
        "request": request,
        "t": t,
        "lang": t.lang,
        "user": user,
        "nav": nav_for(user.principal) if user is not None else [],
        "csrf": csrf if csrf is not None else (user.csrf_token if user is not None else ""),
        "path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        **context,
    }
    return templates.TemplateResponse(
        request, name, page, status_code=status_code, headers=PAGE_HEADERS
    )


def _open_alarms(request: Request, user: ConsoleUser | None) -> int | None:
    """The header's count of open alarms (one grouped count), for an account that reads them."""
    engine = getattr(request.app.state, "engine", None)
    if user is None or engine is None:
        return None
    with Session(engine) as session:
        return alarms.open_count(session=session, principal=user.principal)
