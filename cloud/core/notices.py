"""Notices to recipients and couriers: texts (zh-CN, en), channel, dedupe key, quiet hours, limits.

What a notice says lives in two tables, one row per (kind, language) each: SMS_TEMPLATES, one
short line that fits a single SMS part with the site's signature (70 characters in Chinese, 160
GSM-7 characters in English) and carries NO link (a link beside a code is what phishing texts
imitate: the recipient types the code, or opens the page from the official account); and
TEMPLATES, the WeChat message, with the same fields plus the address and the link (WeChat shows
the link as the message's tap target). A notice is in the recipient's language
(`recipient_language`), and so is the cabinet's name in it (the adapter picks it).

What the dispatcher needs to decide is here too, pure: which channel to try first and which
after a failure (`channel_plan`, `next_channel`), when a notice may go out (`send_after`: quiet
hours), how long to wait before a retry (`retry_delay_s`), whether a recipient may have their
code again (`resend_decision`). `dedupe_key` names a notice so that the outbox holds it once,
whatever retries or redeliveries happen: no notice is ever sent twice.

The pickup code appears only in DEPOSITED and RESEND texts: the cloud keeps no clear code, so a
reminder cannot repeat it (it says how to get a new one instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from string import Formatter

from cloud.core.codes import RandBelow
from cloud.core.phones import mask_phone
from cloud.core.policies import Language, SitePolicy


class NoticeKind(StrEnum):
    """What a notice is about (and so which template it uses)."""

    DEPOSITED = "deposited"  # to the recipient: code, cabinet, deadline, link
    REMINDER = "reminder"  # to the recipient, before the deadline
    EXPIRED = "expired"  # to the recipient: too late, the parcel goes back
    EXPIRED_COURIER = "expired_courier"  # to the courier: take it back out
    NEW_DEADLINE = "new_deadline"  # to the recipient, after the clock was paused
    RESEND = "resend"  # to the recipient who asked again: a new code
    WITHDRAWN = "withdrawn"  # to the recipient: cancelled or taken back before expiry
    SCAN_OTP = "scan_otp"  # to the recipient at a cabinet's QR: a one-time code, by SMS only
    # To the WeChat user a phone was bound to, before another WeChat user's binding replaces it.
    WECHAT_REBOUND = "wechat_rebound"
    # To a site manager: a new critical alarm (`cloud.core.alarms`) at one of their cabinets.
    ALARM = "alarm"


class Audience(StrEnum):
    """Who a notice is for."""

    RECIPIENT = "recipient"
    COURIER = "courier"
    MANAGER = "manager"


AUDIENCE = {kind: Audience.RECIPIENT for kind in NoticeKind} | {
    NoticeKind.EXPIRED_COURIER: Audience.COURIER,
    NoticeKind.ALARM: Audience.MANAGER,
}

# Sent at once even at night: the recipient is waiting for it or has just asked for it.
# Everything else waits for the end of the site's quiet hours.
URGENT_KINDS = frozenset(
    {NoticeKind.DEPOSITED, NoticeKind.RESEND, NoticeKind.SCAN_OTP, NoticeKind.WECHAT_REBOUND}
)


class Channel(StrEnum):
    """How a notice travels."""

    WECHAT = "wechat"
    SMS = "sms"


_FEE_NOTE = {Language.ZH_CN: "超期费 {fee}。", Language.EN: " Overdue fee: {fee}."}

# The WeChat texts. Fields: cabinet, address, compartment, tracking_no, deadline, link, code,
# fee_note.
TEMPLATES: dict[tuple[NoticeKind, Language], str] = {
    (NoticeKind.DEPOSITED, Language.ZH_CN): (
        "您的包裹（运单 {tracking_no}）已存入{cabinet}（{address}）{compartment}号格口，"
        "取件码 {code}，请于 {deadline} 前取件。扫码取件：{link}"
    ),
    (NoticeKind.DEPOSITED, Language.EN): (
        "Your parcel {tracking_no} is in locker {compartment} at {cabinet} ({address}). "
        "Pickup code {code}, collect by {deadline}. QR to scan: {link}"
    ),
    (NoticeKind.REMINDER, Language.ZH_CN): (
        "提醒：您在{cabinet}（{address}）的包裹（运单 {tracking_no}）将于 {deadline} 到期，"
        "请尽快凭取件码取件；取件码遗失可在柜机上重新获取。详情：{link}"
    ),
    (NoticeKind.REMINDER, Language.EN): (
        "Reminder: your parcel {tracking_no} at {cabinet} ({address}) must be collected by "
        "{deadline}. Lost your code? Ask for a new one at the cabinet. Details: {link}"
    ),
    (NoticeKind.EXPIRED, Language.ZH_CN): (
        "您在{cabinet}（{address}）的包裹（运单 {tracking_no}）已于 {deadline} 超期，"
        "取件码已失效，包裹将由快递员取回。{fee_note}详情：{link}"
    ),
    (NoticeKind.EXPIRED, Language.EN): (
        "Your parcel {tracking_no} at {cabinet} ({address}) was not collected by {deadline}. "
        "Its code no longer works and the courier will take it back.{fee_note} Details: {link}"
    ),
    (NoticeKind.EXPIRED_COURIER, Language.ZH_CN): (
        "{cabinet}（{address}）{compartment}号格口的包裹（运单 {tracking_no}）已于 {deadline} "
        "超期，请登录柜机取回。"
    ),
    (NoticeKind.EXPIRED_COURIER, Language.EN): (
        "Parcel {tracking_no} in locker {compartment} at {cabinet} ({address}) expired at "
        "{deadline}. Please log in at the cabinet and take it back."
    ),
    (NoticeKind.NEW_DEADLINE, Language.ZH_CN): (
        "因{cabinet}（{address}）暂时无法取件，您的包裹（运单 {tracking_no}）取件期限顺延至 "
        "{deadline}，取件码不变。详情：{link}"
    ),
    (NoticeKind.NEW_DEADLINE, Language.EN): (
        "{cabinet} ({address}) was unavailable for a while, so you now have until {deadline} "
        "to collect parcel {tracking_no}. Your code is unchanged. Details: {link}"
    ),
    (NoticeKind.RESEND, Language.ZH_CN): (
        "您的新取件码 {code}（旧码已失效）。包裹（运单 {tracking_no}）在{cabinet}（{address}）"
        "{compartment}号格口，请于 {deadline} 前取件。扫码取件：{link}"
    ),
    (NoticeKind.RESEND, Language.EN): (
        "Your new pickup code is {code} (the old one no longer works). Parcel {tracking_no} is "
        "in locker {compartment} at {cabinet} ({address}); collect by {deadline}. QR: {link}"
    ),
    (NoticeKind.WITHDRAWN, Language.ZH_CN): (
        "您在{cabinet}（{address}）的包裹（运单 {tracking_no}）已被撤回，取件码已失效。"
        "如有疑问请联系商家。详情：{link}"
    ),
    (NoticeKind.WITHDRAWN, Language.EN): (
        "Your parcel {tracking_no} at {cabinet} ({address}) has been withdrawn and its code "
        "no longer works. Please contact the seller. Details: {link}"
    ),
    # `deadline` is when the code dies; the text is short because the recipient is waiting.
    (NoticeKind.SCAN_OTP, Language.ZH_CN): (
        "{cabinet}（{address}）扫码取件验证码 {code}，{deadline} 前有效。请勿告诉他人。"
    ),
    (NoticeKind.SCAN_OTP, Language.EN): (
        "{code} is your one-time code to open your locker at {cabinet} ({address}), valid until "
        "{deadline}. Never share it."
    ),
    # `deadline` is when the phone was proven by the other WeChat user.
    (NoticeKind.WECHAT_REBOUND, Language.ZH_CN): (
        "您手机号的取件通知将不再发送到此微信：另一个微信账号于 {deadline} 在{cabinet}"
        "（{address}）验证了该手机号并已绑定。如非本人操作，请联系物业。"
    ),
    (NoticeKind.WECHAT_REBOUND, Language.EN): (
        "Parcel notices for your phone will no longer come to this WeChat account: another "
        "WeChat account proved the phone at {cabinet} ({address}) at {deadline} and is linked "
        "to it now. If this was not you, contact the site."
    ),
    # `deadline` is when the alarm was first seen; `what` its kind, `where` the door if any.
    (NoticeKind.ALARM, Language.ZH_CN): (
        "【告警】{cabinet}（{address}）{where}：{what}，{deadline}。请登录管理后台处理：{link}"
    ),
    (NoticeKind.ALARM, Language.EN): (
        "ALARM at {cabinet} ({address}){where}: {what} at {deadline}. Console: {link}"
    ),
}


# The SMS texts: one part each, no link, no address (the page has it). Fields: cabinet,
# compartment, tracking_no, deadline, code, fee_note. The signature is put in front by
# `render_sms`, and a long cabinet name is shortened there to keep the text in one part.
SMS_TEMPLATES: dict[tuple[NoticeKind, Language], str] = {
    (NoticeKind.DEPOSITED, Language.ZH_CN): (
        "取件码 {code}，运单{tracking_no}已存入{cabinet}的{compartment}号格口，"
        "请于{deadline}前取件。"
    ),
    (NoticeKind.DEPOSITED, Language.EN): (
        "Pickup code {code}: parcel {tracking_no} is in door {compartment} at {cabinet}. "
        "Collect it by {deadline}."
    ),
    (NoticeKind.REMINDER, Language.ZH_CN): (
        "您在{cabinet}的包裹（运单{tracking_no}）将于{deadline}到期，请尽快取件。"
        "取件码遗失可在柜机上重新获取。"
    ),
    (NoticeKind.REMINDER, Language.EN): (
        "Parcel {tracking_no} at {cabinet} must be collected by {deadline}. "
        "Lost the code? Ask for it again at the cabinet."
    ),
    (NoticeKind.EXPIRED, Language.ZH_CN): (
        "您在{cabinet}的包裹（运单{tracking_no}）已于{deadline}超期，取件码已失效，包裹将退回。"
        "{fee_note}"
    ),
    (NoticeKind.EXPIRED, Language.EN): (
        "Parcel {tracking_no} at {cabinet} was not collected by {deadline}. Its code no longer "
        "works and it goes back.{fee_note}"
    ),
    (NoticeKind.EXPIRED_COURIER, Language.ZH_CN): (
        "{cabinet}的{compartment}号格口运单{tracking_no}已于{deadline}超期，请登录柜机取回。"
    ),
    (NoticeKind.EXPIRED_COURIER, Language.EN): (
        "Parcel {tracking_no} in door {compartment} at {cabinet} expired at {deadline}. "
        "Please sign in at the cabinet and take it back."
    ),
    (NoticeKind.NEW_DEADLINE, Language.ZH_CN): (
        "{cabinet}曾暂停使用，您的包裹（运单{tracking_no}）取件期限顺延至{deadline}，取件码不变。"
    ),
    (NoticeKind.NEW_DEADLINE, Language.EN): (
        "{cabinet} was out of use for a while: collect parcel {tracking_no} by {deadline}. "
        "Your code is unchanged."
    ),
    (NoticeKind.RESEND, Language.ZH_CN): (
        "新取件码 {code}，运单{tracking_no}在{cabinet}的{compartment}号格口，请于{deadline}前取件。"
    ),
    (NoticeKind.RESEND, Language.EN): (
        "New pickup code {code} (the old one no longer works). Parcel {tracking_no}, door "
        "{compartment} at {cabinet}; collect by {deadline}."
    ),
    (NoticeKind.WITHDRAWN, Language.ZH_CN): (
        "您在{cabinet}的包裹（运单{tracking_no}）已被撤回，取件码已失效。如有疑问请联系商家。"
    ),
    (NoticeKind.WITHDRAWN, Language.EN): (
        "Parcel {tracking_no} at {cabinet} was withdrawn and its code no longer works. "
        "Please contact the seller."
    ),
    (NoticeKind.SCAN_OTP, Language.ZH_CN): (
        "验证码 {code}，用于在{cabinet}扫码开门，{deadline}前有效，请勿告诉他人。"
    ),
    (NoticeKind.SCAN_OTP, Language.EN): (
        "{code} is your one-time code to open your door at {cabinet}, valid until {deadline}. "
        "Never share it."
    ),
    (NoticeKind.WECHAT_REBOUND, Language.ZH_CN): (
        "您手机号的取件通知已改发到另一个微信（{deadline}在{cabinet}验证）。如非本人操作请联系物业。"
    ),
    (NoticeKind.WECHAT_REBOUND, Language.EN): (
        "Parcel notices for your phone now go to another WeChat account (proved at {cabinet} "
        "at {deadline}). Not you? Contact the site."
    ),
    # A site manager's alarm: no link either (the console is signed in to, never followed from
    # a text); `where` is the door if any, `deadline` when the alarm was first seen.
    (NoticeKind.ALARM, Language.ZH_CN): (
        "告警：{cabinet}，{where}{what}，{deadline}。请登录管理后台处理。"
    ),
    (NoticeKind.ALARM, Language.EN): (
        "ALARM: {cabinet}{where}: {what} at {deadline}. Please see the console."
    ),
}

# --- SMS parts ----------------------------------------------------------------------------------

# GSM 03.38: the basic alphabet (one septet each) and its extension table (two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
GSM7_PART = 160  # characters in one part of a GSM-7 text
UCS2_PART = 70  # characters in one part of any other text (Chinese)


def is_gsm7(text: str) -> bool:
    """Whether `text` can go in the GSM-7 alphabet (else the SMS is UCS-2: 70 a part)."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def sms_units(text: str) -> tuple[int, int]:
    """Return (units used, units in one part) for `text` as an SMS.

    GSM-7: an extension character takes two septets. UCS-2: a character outside the BMP (an
    emoji) takes two code units.
    """
    if is_gsm7(text):
        return sum(2 if c in GSM7_EXTENDED else 1 for c in text), GSM7_PART
    return sum(2 if ord(c) > 0xFFFF else 1 for c in text), UCS2_PART


def sms_parts(text: str) -> int:
    """Return how many billed parts `text` is (a multi-part text loses room to its headers)."""
    used, part = sms_units(text)
    if used <= part:
        return 1
    per_part = 153 if part == GSM7_PART else 67
    return -(-used // per_part)


CHINESE_PREFIXES = ("+86", "+852", "+853", "+886")


def signature_prefix(language: Language, policy: SitePolicy) -> str:
    """The site's signature as an SMS starts with it: 【滨江快递柜】, [Riverside Lockers] ."""
    if language is Language.ZH_CN:
        return f"【{policy.sms_signature}】" if policy.sms_signature else ""
    return f"[{policy.sms_signature_en}] " if policy.sms_signature_en else ""


def recipient_language(phone: str, policy: SitePolicy) -> Language:
    """The language a notice to `phone` is written in: the site's, except that at a Chinese
    site a mobile from outside mainland China, Hong Kong, Macao and Taiwan gets English (a
    visitor's phone; a Chinese text is one they cannot read)."""
    if (
        policy.language is Language.ZH_CN
        and phone.startswith("+")
        and not phone.startswith(CHINESE_PREFIXES)
    ):
        return Language.EN
    return policy.language


def template_fields(
    kind: NoticeKind, language: Language, channel: Channel = Channel.WECHAT
) -> frozenset[str]:
    """Return the names of the fields the (kind, language) template of `channel` uses."""
    table = SMS_TEMPLATES if channel is Channel.SMS else TEMPLATES
    return frozenset(name for _, name, _, _ in Formatter().parse(table[kind, language]) if name)


@dataclass(frozen=True)
class NoticeContext:
    """What a text is filled with; the adapter gathers it (cabinet, address, link) from its rows.

    `link` is the pickup page (`codes.pickup_link`) where the text has a code, otherwise a page
    without one (tracking). `fee_minor` is the overdue fee so far, None when the site has none.
    """

    cabinet: str
    address: str
    tracking_no: str
    deadline: datetime
    link: str
    compartment: str = ""
    code: str | None = field(default=None, repr=False)
    fee_minor: int | None = None
    currency: str = "CNY"
    what: str = ""  # an alarm's kind, as a person reads it
    where: str = ""  # an alarm's door, as a phrase of the text's language ("" for the cabinet)


# Not strftime("%b"): that follows the process locale, which an adapter may have changed.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_deadline(deadline: datetime, policy: SitePolicy, language: Language) -> str:
    """Format a deadline in the site's local time, as a recipient reads it."""
    local = deadline.astimezone(policy.zone)
    if language is Language.ZH_CN:
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local:%H:%M} on {local.day} {_MONTHS[local.month - 1]} {local.year}"


def format_money(amount_minor: int, currency: str) -> str:
    """Format an amount in minor units: `¥5.00`, `EUR 5.00`."""
    sign = "¥" if currency == "CNY" else f"{currency} "
    return f"{sign}{amount_minor // 100}.{amount_minor % 100:02d}"


def _fields(
    kind: NoticeKind, language: Language, context: NoticeContext, policy: SitePolicy
) -> dict[str, str]:
    if "code" in template_fields(kind, language) and not context.code:
        raise ValueError(f"a {kind} notice needs the pickup code")
    fee_note = ""
    if context.fee_minor:
        fee_note = _FEE_NOTE[language].format(fee=format_money(context.fee_minor, context.currency))
    return {
        "cabinet": context.cabinet,
        "address": context.address,
        "compartment": context.compartment,
        "tracking_no": context.tracking_no,
        "deadline": format_deadline(context.deadline, policy, language),
        "link": context.link,
        "code": context.code or "",
        "fee_note": fee_note,
        "what": context.what,
        "where": context.where,
    }


def render(
    kind: NoticeKind,
    language: Language,
    context: NoticeContext,
    policy: SitePolicy,
    channel: Channel = Channel.WECHAT,
) -> str:
    """Return the text of a notice for `channel` (an SMS: `render_sms`); raise ValueError if
    the template needs a code and has none."""
    if channel is Channel.SMS:
        return render_sms(kind, language, context, policy)
    return TEMPLATES[kind, language].format(**_fields(kind, language, context, policy))


# The shortest a long name is cut to before the tracking number is cut too.
_MIN_NAME = 6


def render_sms(
    kind: NoticeKind, language: Language, context: NoticeContext, policy: SitePolicy
) -> str:
    """Return the SMS of a notice: the signature, then one line in one part, with no link.

    A tracking number (then a cabinet name) too long for one part is cut, with an ellipsis:
    the code, the door and the deadline always go whole.
    """
    fields = _fields(kind, language, context, policy)
    template = signature_prefix(language, policy) + SMS_TEMPLATES[kind, language]
    ellipsis = "…" if language is Language.ZH_CN else "..."
    # The tracking number gives way first (its last digits are what a person matches), then
    # the cabinet's name (its start is what a person recognises).
    for name, keep_end in (("tracking_no", True), ("cabinet", False)):
        text = template.format(**fields)
        used, part = sms_units(text)
        value = fields[name]
        if used <= part or len(value) <= _MIN_NAME or name not in template:
            continue
        keep = max(_MIN_NAME, len(value) - (used - part) - len(ellipsis))
        # A cut name falls back to UCS-2 if the ellipsis is not GSM-7: "..." in English.
        fields[name] = ellipsis + value[-keep:] if keep_end else value[:keep] + ellipsis
    return template.format(**fields)


def dedupe_key(
    parcel_id: str, kind: NoticeKind, deadline: datetime, code_generation: int = 0
) -> str:
    """Name a notice so the outbox holds it at most once.

    One notice of a kind per parcel and deadline: a new deadline is worth a new notice, a retry
    or a redelivered event is not. A resend carries a new code, so its generation is in the key.
    """
    at = deadline.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    key = f"{parcel_id}/{kind}/{at}"
    return f"{key}/code{code_generation}" if kind is NoticeKind.RESEND else key


@dataclass(frozen=True)
class Notice:
    """A notice ready for the outbox. `text` and `code` never reach a log (see `log_form`)."""

    dedupe_key: str
    kind: NoticeKind
    phone: str = field(repr=False)
    language: Language
    text: str = field(repr=False)  # the SMS
    code: str | None = field(default=None, repr=False)
    wechat_text: str = field(default="", repr=False)  # the WeChat message ("": the SMS's)

    def text_for(self, channel: Channel) -> str:
        """The text to send over `channel`."""
        return self.wechat_text or self.text if channel is Channel.WECHAT else self.text

    def log_form(self, channel: Channel | None = None) -> str:
        """Return the one line a log may hold about this notice: masked phone, no text, no code."""
        via = f" via {channel}" if channel else ""
        return f"notice {self.kind}{via} to {mask_phone(self.phone)} key={self.dedupe_key}"

    def scrubbed(self) -> Notice:
        """Return the notice as it may be kept once sent: the code blanked out of the text."""
        if not self.code:
            return self
        stars = "*" * len(self.code)
        return replace(
            self,
            text=self.text.replace(self.code, stars),
            wechat_text=self.wechat_text.replace(self.code, stars),
            code=None,
        )


def compose(
    *,
    kind: NoticeKind,
    phone: str,
    language: Language,
    context: NoticeContext,
    policy: SitePolicy,
    key: str,
) -> Notice:
    """Render a notice for the outbox: its SMS and its WeChat message."""
    text = render_sms(kind, language, context, policy)
    wechat_text = render(kind, language, context, policy, Channel.WECHAT)
    code = context.code if "code" in template_fields(kind, language) else None
    return Notice(
        dedupe_key=key,
        kind=kind,
        phone=phone,
        language=language,
        text=text,
        code=code,
        wechat_text=wechat_text,
    )


# --- when and how it goes out ---------------------------------------------------------------------


def send_after(kind: NoticeKind, now: datetime, policy: SitePolicy) -> datetime:
    """Return the earliest time a notice queued at `now` may be sent (quiet hours delay it)."""
    if kind in URGENT_KINDS:
        return now
    return policy.outside_quiet_hours(now)


def channel_plan(wechat_openid: str | None) -> tuple[Channel, ...]:
    """Return the channels to try in order: WeChat first if the phone is bound, SMS always."""
    return (Channel.WECHAT, Channel.SMS) if wechat_openid else (Channel.SMS,)


def next_channel(plan: tuple[Channel, ...], failed: Channel) -> Channel | None:
    """Return the channel to fall back to after `failed` gave up for good, or None."""
    position = plan.index(failed)
    return plan[position + 1] if position + 1 < len(plan) else None


def retry_delay_s(
    attempt: int, randbelow: RandBelow, *, base_s: int = 5, cap_s: int = 15 * 60
) -> int:
    """Return the wait before retry number `attempt` (1, 2, …): exponential, full jitter.

    `randbelow(n)` is the injected random source. The jitter spreads retries of a batch that
    failed together (a provider outage) so they do not all come back at the same second.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling_s = min(cap_s, base_s * 2 ** min(attempt - 1, 30))
    return 1 + randbelow(ceiling_s)


@dataclass(frozen=True)
class ResendDecision:
    """Whether a resend may go now; if not, from when it may (`retry_at`)."""

    allowed: bool
    retry_at: datetime | None = None


def resend_decision(
    history: Iterable[datetime], now: datetime, policy: SitePolicy
) -> ResendDecision:
    """Decide a resend for one parcel, given when earlier resends of it were sent."""
    window = timedelta(seconds=policy.resend_window_s)
    recent = sorted(at for at in history if now - at < window)
    if len(recent) < policy.resend_limit:
        return ResendDecision(allowed=True)
    # The oldest resend that still counts must leave the window before another may go.
    return ResendDecision(allowed=False, retry_at=recent[-policy.resend_limit] + window)
