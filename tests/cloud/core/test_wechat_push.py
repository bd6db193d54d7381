"""WeChat's push signature rule and the official account's answers, pure."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from cloud.core.wechat_push import (
    PUSH_MAX_AGE_S,
    ResendSummary,
    codes_reply,
    push_is_genuine,
    push_signature,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))


def test_the_signature_is_sha1_of_the_three_strings_sorted_and_joined() -> None:
    # WeChat's rule, spelled out by hand: "1764579600" < "nonce" < "token" in byte order.
    expected = hashlib.sha1(f"{TS}noncetoken".encode()).hexdigest()
    assert push_signature("token", TS, "nonce") == expected


def test_a_push_is_genuine_only_with_the_token_and_a_fresh_timestamp() -> None:
    good = push_signature("token", TS, "n")
    assert push_is_genuine(token="token", signature=good, timestamp=TS, nonce="n", now=NOW)
    assert push_is_genuine(token="token", signature=good.upper(), timestamp=TS, nonce="n", now=NOW)
    assert not push_is_genuine(token="other", signature=good, timestamp=TS, nonce="n", now=NOW)
    assert not push_is_genuine(token="token", signature=good, timestamp=TS, nonce="m", now=NOW)
    assert not push_is_genuine(
        token="", signature=push_signature("", TS, "n"), timestamp=TS, nonce="n", now=NOW
    )
    late = NOW + timedelta(seconds=PUSH_MAX_AGE_S + 1)
    assert not push_is_genuine(token="token", signature=good, timestamp=TS, nonce="n", now=late)
    assert not push_is_genuine(token="token", signature=good, timestamp="-1", nonce="n", now=NOW)


def test_the_replies_say_what_happened_in_both_languages() -> None:
    assert "尚未绑定" in codes_reply(ResendSummary(bound=False))
    assert "no parcel" in codes_reply(ResendSummary(bound=True))
    mixed = codes_reply(
        ResendSummary(
            bound=True,
            resent=2,
            limited=1,
            limited_until=datetime(2026, 12, 1, 18, 5, tzinfo=UTC),
            offline=1,
        )
    )
    assert "2 个包裹" in mixed and "18:05" in mixed and "离线" in mixed
    assert "2 parcel(s)" in mixed and "after 18:05" in mixed and "offline" in mixed
