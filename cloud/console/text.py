"""The console's words in zh-CN and English (cloud/console/i18n/*.json) and how a page picks one.

The language is the `console_lang` cookie (set by the switch in the header), else the browser's
Accept-Language, else zh-CN. A key missing from a language falls back to English, then to the
key itself, so a forgotten translation shows up as a readable key, never as an error.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

I18N = Path(__file__).resolve().parent / "i18n"
LANGUAGES = ("zh-CN", "en")
DEFAULT_LANGUAGE = "zh-CN"
LANG_COOKIE = "console_lang"


@cache
def catalogue(lang: str) -> dict[str, str]:
    return json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """Return the page's language from the cookie, else the first language the browser lists."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LANGUAGE


class Translator:
    """`t("key", name=value)`: the key's text in the page's language, with fields filled in."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._own = catalogue(self.lang)
        self._fallback = catalogue("en")

    def __call__(self, key: str, **fields: object) -> str:
        text = self._own.get(key) or self._fallback.get(key) or key
        return text.format(**fields) if fields else text

    def named(self, key: str, default: str) -> str:
        """The key's text if either language has it, else `default` (a machine name shown as
        it is stored, e.g. an audit action no catalogue names yet)."""
        return self._own.get(key) or self._fallback.get(key) or default

    def age(self, delta: timedelta) -> str:
        """A duration as people read it: "3 d 4 h", "2 h 5 min", "40 s" (天/小时/分钟/秒)."""
        seconds = max(0, int(delta.total_seconds()))
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        units = ("天", "小时", "分钟", "秒") if self.lang == "zh-CN" else (" d", " h", " min", " s")
        parts = [(days, units[0]), (hours, units[1]), (minutes, units[2]), (secs, units[3])]
        shown = [f"{n}{u}" for n, u in parts if n][:2]
        return (" " if self.lang == "en" else "").join(shown) or f"0{units[3]}"


def local_time(at: datetime | None, zone: str, *, seconds: bool = False) -> str:
    """`at` in the site's zone as "2026-12-04 18:40" (with the zone's abbreviation)."""
    if at is None:
        return "—"
    local = at.astimezone(ZoneInfo(zone))
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
