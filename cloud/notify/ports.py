"""The small interfaces the dispatcher sends through: a channel sender and WeChat bindings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to send: `to` is an E.164 phone (SMS) or an openid (WeChat).

    `ref` names the send attempt (notice id and attempt token) so a provider callback can find
    the row again; `link` is the pickup page, which WeChat shows as the message's tap target.
    """

    to: str = field(repr=False)
    text: str = field(repr=False)
    ref: str
    link: str | None = None


@dataclass(frozen=True)
class SendReceipt:
    """What a provider said when it accepted a message."""

    provider_id: str  # Twilio's message SID, WeChat's msgid
    status: str  # Twilio's status at creation (queued, …); "sent" for WeChat


class Sender(Protocol):
    """Send one message over one channel, raising `cloud.notify.errors.SendError` on failure."""

    def send(self, message: OutgoingMessage) -> SendReceipt: ...


class WechatBindings(Protocol):
    """Tell which WeChat user (openid) a phone is bound to, if any."""

    def openid_for(self, phone: str) -> str | None: ...


class StaticBindings:
    """Bindings held in memory: the demo's and the tests' WeChat directory."""

    def __init__(self, bindings: dict[str, str] | None = None) -> None:
        self._by_phone = dict(bindings or {})

    def bind(self, phone: str, openid: str) -> None:
        """Bind `phone` to `openid`."""
        self._by_phone[phone] = openid

    def openid_for(self, phone: str) -> str | None:
        return self._by_phone.get(phone)
