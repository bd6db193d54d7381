"""WeChat's server push to the official account: the signature rule and what the account answers.

WeChat signs every push (the `GET` that verifies the server URL and each `POST` of a message)
with `signature = sha1(''.join(sorted([token, timestamp, nonce])))`, `token` being the one set
in the account's server configuration. A push older than PUSH_MAX_AGE_S (or from the future by
as much) is refused too: with the MsgId kept for a day, a captured push cannot be replayed.

A bound recipient who writes anything to the account gets new codes for their live parcels
(`cloud.services.wechat_codes`); `codes_reply` is the text the account answers with at once,
in zh-CN and English (a reply cannot know the site's language: one recipient may have parcels
at several sites). The codes themselves travel in the resend notices, never in this reply.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

PUSH_MAX_AGE_S = 5 * 60


def push_signature(token: str, timestamp: str, nonce: str) -> str:
    """Return the signature WeChat puts on a push: sha1 of the sorted, joined three strings."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def push_is_genuine(
    *, token: str, signature: str, timestamp: str, nonce: str, now: datetime
) -> bool:
    """Whether a push carries the account's signature and a timestamp within PUSH_MAX_AGE_S."""
    if not token or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    expected = push_signature(token, timestamp, nonce)
    if not hmac.compare_digest(expected, signature.lower()):
        return False
    return abs(now.timestamp() - int(timestamp)) <= PUSH_MAX_AGE_S


@dataclass(frozen=True)
class ResendSummary:
    """What asking for codes on WeChat did.

    `bound`: the openid is bound to a phone; `resent`: parcels that got a new code;
    `limited_until`: the earliest time a parcel held back by the resend limit may ask again, in
    its site's local time;
    `offline`: parcels whose cabinet is offline (a new code could not reach it).
    """

    bound: bool
    resent: int = 0
    limited_until: datetime | None = None
    limited: int = 0
    offline: int = 0


def codes_reply(summary: ResendSummary) -> str:
    """Return the account's answer to a request for codes: zh-CN, then English."""
    if not summary.bound:
        return (
            "您的微信尚未绑定手机号。请扫描柜机屏幕上的二维码，用手机号验证后即可绑定。\n"
            "This WeChat account is not linked to a phone number yet. Scan the QR code on the "
            "cabinet's screen and verify your phone number to link it."
        )
    parts_zh: list[str] = []
    parts_en: list[str] = []
    if summary.resent:
        parts_zh.append(f"已为您的 {summary.resent} 个包裹重新发送取件码（旧码已失效），请查收。")
        parts_en.append(
            f"New pickup codes for {summary.resent} parcel(s) are on their way "
            "(the old codes no longer work)."
        )
    if summary.limited:
        at = f"{summary.limited_until:%H:%M}" if summary.limited_until else ""
        parts_zh.append(f"{summary.limited} 个包裹的取件码刚刚发送过，请于 {at} 后再试。")
        parts_en.append(
            f"{summary.limited} parcel(s) had a code sent just now: try again after {at}."
        )
    if summary.offline:
        parts_zh.append(f"{summary.offline} 个包裹所在柜机暂时离线，恢复后再试。")
        parts_en.append(
            f"The cabinet of {summary.offline} parcel(s) is offline for now: try again later."
        )
    if not parts_zh:
        return "您目前没有待取的包裹。\nYou have no parcel waiting in a locker."
    return "".join(parts_zh) + "\n" + " ".join(parts_en)
