"""The phone pages' first language: the browser's first choice of Chinese or English, else the
site's (cloud/api/phone_pages.py)."""

from __future__ import annotations

import pytest

from cloud.api.phone_pages import page_language


@pytest.mark.parametrize(
    ("accept", "site", "expected"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "en", "zh-CN"),
        ("zh-TW,zh;q=0.9", "en", "zh-CN"),
        ("en-GB,en;q=0.9", "zh-CN", "en"),
        ("en;q=0.5,zh;q=0.8", "en", "zh-CN"),  # the higher quality wins, not the first named
        ("fr-FR,de;q=0.8", "zh-CN", "zh-CN"),  # neither: the site's
        ("fr-FR", "en", "en"),
        (None, "zh-CN", "zh-CN"),
        ("zh;q=0", "en", "en"),  # q=0 means "not this one"
        ("garbage;;q=x", "zh-CN", "zh-CN"),
    ],
)
def test_the_page_language(accept: str | None, site: str, expected: str) -> None:
    assert page_language(accept, site) == expected
