"""Every screen the core can ask for has its text in zh-CN and English, with the same fields."""

from __future__ import annotations

import re
import typing
from enum import StrEnum

from cabinet.core import screens
from cabinet.kiosk.app import LANGUAGES, load_texts

SCREENS = typing.get_args(screens.Screen)
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _variants(text: str | dict[str, str]) -> dict[str, str]:
    return text if isinstance(text, dict) else {"": text}


def test_every_screen_has_text_in_every_language() -> None:
    texts = load_texts()
    for lang in LANGUAGES:
        missing = [cls.__name__ for cls in SCREENS if cls.__name__ not in texts[lang]["screens"]]
        assert not missing, f"{lang} lacks {missing}"
        unknown = set(texts[lang]["screens"]) - {cls.__name__ for cls in SCREENS}
        assert not unknown, f"{lang} has text for screens that do not exist: {unknown}"


def test_both_languages_say_the_same_things() -> None:
    en, zh = (load_texts()[lang] for lang in ("en", "zh-CN"))
    assert set(en["ui"]) == set(zh["ui"])
    for cls in SCREENS:
        name = cls.__name__
        en_v, zh_v = _variants(en["screens"][name]), _variants(zh["screens"][name])
        assert set(en_v) == set(zh_v), name
        for key in en_v:
            assert set(PLACEHOLDER.findall(en_v[key])) == set(PLACEHOLDER.findall(zh_v[key])), (
                name,
                key,
            )
    for key, value in en["ui"].items():
        if isinstance(value, str):
            assert set(PLACEHOLDER.findall(value)) == set(PLACEHOLDER.findall(zh["ui"][key])), key


def test_placeholders_name_the_screen_fields_and_problems_have_every_variant() -> None:
    # "time_left" is the page's rendering of seconds_left (a live countdown).
    derived = {"time_left": "seconds_left"}
    for lang, text in load_texts().items():
        for cls in SCREENS:
            fields = set(cls.__dataclass_fields__)
            for variant, line in _variants(text["screens"][cls.__name__]).items():
                for name in PLACEHOLDER.findall(line):
                    assert derived.get(name, name) in fields, (lang, cls.__name__, variant, name)
            hints = typing.get_type_hints(cls)
            problem = hints.get("problem")
            if isinstance(problem, type) and issubclass(problem, StrEnum):
                assert set(text["screens"][cls.__name__]) == {p.value for p in problem}, (
                    lang,
                    cls.__name__,
                )
