"""The console's stylesheet and script (shipped in the package) and the language switch."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, RedirectResponse, Response

from cloud.console import auth
from cloud.console.text import LANG_COOKIE, LANGUAGES

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
# The only files served, each with its type: a fixed list, never a path from the request.
ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}
ONE_YEAR_S = 365 * 24 * 3600


@router.get("/console/static/{name}")
def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such console asset")
    return FileResponse(STATIC / name, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/console/lang/{lang}")
def switch_language(lang: str, next: str = "") -> Response:
    """Remember the language for a year and go back where the switch was clicked."""
    if lang not in LANGUAGES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such language")
    response = RedirectResponse(auth.safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        LANG_COOKIE, lang, max_age=ONE_YEAR_S, path=auth.COOKIE_PATH, secure=True,
        samesite="lax",
    )  # fmt: skip
    return response
