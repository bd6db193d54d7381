"""Notice texts in both languages, masking, channels and fallback, dedupe, quiet hours, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cloud.core import notices as n
from cloud.core import parcels as p
from cloud.core.codes import pickup_link
from cloud.core.notices import Channel, NoticeKind
from cloud.core.pauses import PauseReason
from cloud.core.policies import Language, SitePolicy
from tests.cloud.core import factories as f
from tests.cloud.core.factories import HOUR, PARCEL_ID, PHONE, T0, Scripted

POLICY = SitePolicy()
DEADLINE = datetime(2024, 5, 4, 10, 0, tzinfo=UTC)  # 18:00 in Shanghai
LINK = pickup_link("https://lockers.example", "CAB-1", "40718253")
CONTEXT = n.NoticeContext(
    cabinet="Sunny Garden Lockers 3",
    address="88 Huaihai Road, Building 2",
    tracking_no="SF1234567890",
    deadline=DEADLINE,
    link=LINK,
    compartment="A03",
    code="40718253",
)
DEADLINE_TEXT = {Language.ZH_CN: "5月4日 18:00", Language.EN: "18:00 on 4 May 2024"}
ALL = [(kind, language) for kind in NoticeKind for language in Language]


def test_every_kind_has_a_text_in_every_language() -> None:
    assert set(n.TEMPLATES) == set(ALL)


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", [NoticeKind.DEPOSITED, NoticeKind.RESEND])
def test_code_notices_name_cabinet_address_code_deadline_link(
    kind: NoticeKind, language: Language
) -> None:
    text = n.render(kind, language, CONTEXT, POLICY)
    for part in (CONTEXT.cabinet, CONTEXT.address, "40718253", DEADLINE_TEXT[language], LINK):
        assert part in text


@pytest.mark.parametrize(("kind", "language"), ALL)
def test_every_text_renders_with_cabinet_address_and_deadline(
    kind: NoticeKind, language: Language
) -> None:
    assert n.template_fields(kind, language) <= {
        "cabinet",
        "address",
        "compartment",
        "tracking_no",
        "deadline",
        "link",
        "code",
        "fee_note",
        "what",
        "where",
    }
    text = n.render(kind, language, CONTEXT, POLICY)
    assert CONTEXT.cabinet in text and CONTEXT.address in text
    if kind is not NoticeKind.WITHDRAWN:
        assert DEADLINE_TEXT[language] in text
    assert "{" not in text and "}" not in text


@pytest.mark.parametrize("language", list(Language))
@pytest.mark.parametrize("kind", [k for k in NoticeKind if k not in n.URGENT_KINDS])
def test_only_code_notices_carry_the_code(kind: NoticeKind, language: Language) -> None:
    assert "code" not in n.template_fields(kind, language)


def test_a_code_notice_without_a_code_is_refused() -> None:
    context = n.NoticeContext("Cab", "Addr", "SF1", DEADLINE, "https://x", code=None)
    with pytest.raises(ValueError, match="pickup code"):
        n.render(NoticeKind.DEPOSITED, Language.EN, context, POLICY)


@pytest.mark.parametrize(
    ("language", "fee_text"),
    [(Language.ZH_CN, "超期费 ¥5.00"), (Language.EN, "Overdue fee: ¥5.00")],
)
def test_expired_text_shows_the_overdue_fee(language: Language, fee_text: str) -> None:
    context = n.NoticeContext("Cab", "Addr", "SF1", DEADLINE, "https://x", fee_minor=500)
    assert fee_text in n.render(NoticeKind.EXPIRED, language, context, POLICY)
    no_fee = n.NoticeContext("Cab", "Addr", "SF1", DEADLINE, "https://x")
    assert "¥" not in n.render(NoticeKind.EXPIRED, language, no_fee, POLICY)


def test_money_format() -> None:
    assert n.format_money(505, "CNY") == "¥5.05"
    assert n.format_money(1999, "EUR") == "EUR 19.99"


def compose(kind: NoticeKind = NoticeKind.DEPOSITED) -> n.Notice:
    return n.compose(
        kind=kind,
        phone=PHONE,
        language=Language.ZH_CN,
        context=CONTEXT,
        policy=POLICY,
        key=n.dedupe_key(PARCEL_ID, kind, DEADLINE),
    )


def test_log_form_masks_the_phone_and_leaves_out_text_and_code() -> None:
    notice = compose()
    line = notice.log_form(Channel.SMS)
    assert "+86 138****1234" in line and "via sms" in line
    assert "13812341234" not in line and "40718253" not in line
    assert "13812341234" not in repr(notice) and "40718253" not in repr(notice)


def test_a_sent_notice_is_scrubbed_of_its_code() -> None:
    notice = compose()
    assert "40718253" in notice.text
    scrubbed = notice.scrubbed()
    assert "40718253" not in scrubbed.text and scrubbed.code is None
    assert "********" in scrubbed.text
    reminder = compose(NoticeKind.REMINDER)
    assert reminder.code is None and reminder.scrubbed() == reminder


# --- dedupe ---------------------------------------------------------------------------------------


def test_dedupe_key_is_stable_and_tells_deadlines_and_resends_apart() -> None:
    key = n.dedupe_key(PARCEL_ID, NoticeKind.REMINDER, DEADLINE)
    assert key == f"{PARCEL_ID}/reminder/20240504T100000.000000Z"
    same_instant = DEADLINE.astimezone(ZoneInfo("Asia/Shanghai"))
    assert n.dedupe_key(PARCEL_ID, NoticeKind.REMINDER, same_instant) == key
    assert n.dedupe_key(PARCEL_ID, NoticeKind.NEW_DEADLINE, DEADLINE + HOUR) != n.dedupe_key(
        PARCEL_ID, NoticeKind.NEW_DEADLINE, DEADLINE
    )
    assert n.dedupe_key(PARCEL_ID, NoticeKind.RESEND, DEADLINE, 2) != n.dedupe_key(
        PARCEL_ID, NoticeKind.RESEND, DEADLINE, 3
    )


def test_replaying_a_parcels_life_gives_the_same_keys_and_never_one_twice() -> None:
    def life() -> list[str]:
        keys = []
        parcel = None
        steps = [
            (f.deposit_event(), T0),
            (p.Remind(), T0 + 48 * HOUR),
            (p.PauseDeadline(PauseReason.CABINET_OFFLINE), T0 + 50 * HOUR),
            (p.ResumeDeadline(PauseReason.CABINET_OFFLINE), T0 + 55 * HOUR),
            (p.ReissueCode(f.code("12345678")), T0 + 56 * HOUR),
            (p.ReissueCode(f.code("87654321")), T0 + 57 * HOUR),
            (p.Expire(), T0 + 77 * HOUR),
        ]
        for event, now in steps:
            parcel, effects = p.apply(parcel, event, now)
            keys += [e.dedupe_key for e in effects if isinstance(e, p.Notify)]
        return keys

    keys = life()
    assert len(keys) == len(set(keys)) == 7  # deposit, reminder, new deadline, 2 resends, 2 expiry
    assert life() == keys


# --- channels, timing, retries --------------------------------------------------------------------


def test_wechat_first_when_bound_then_sms() -> None:
    plan = n.channel_plan("oWx-openid-123")
    assert plan == (Channel.WECHAT, Channel.SMS)
    assert n.next_channel(plan, Channel.WECHAT) is Channel.SMS
    assert n.next_channel(plan, Channel.SMS) is None


def test_sms_only_when_not_bound() -> None:
    plan = n.channel_plan(None)
    assert plan == (Channel.SMS,)
    assert n.next_channel(plan, Channel.SMS) is None


def test_quiet_hours_hold_back_all_but_urgent_notices() -> None:
    night = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    morning = datetime(2024, 5, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert n.send_after(NoticeKind.DEPOSITED, night, POLICY) == night
    assert n.send_after(NoticeKind.RESEND, night, POLICY) == night
    assert n.send_after(NoticeKind.NEW_DEADLINE, night, POLICY) == morning
    assert n.send_after(NoticeKind.REMINDER, night, POLICY) == morning
    assert n.send_after(NoticeKind.REMINDER, morning, POLICY) == morning
    no_quiet = SitePolicy(quiet_start=None, quiet_end=None)
    assert n.send_after(NoticeKind.REMINDER, night, no_quiet) == night


def test_retry_delay_grows_with_jitter_and_is_capped() -> None:
    highest = [n.retry_delay_s(a, lambda k: k - 1) for a in range(1, 12)]
    assert highest[:4] == [5, 10, 20, 40]
    assert max(highest) == 15 * 60
    randbelow = Scripted([0, 7])
    assert [n.retry_delay_s(3, randbelow), n.retry_delay_s(3, randbelow)] == [1, 8]
    assert randbelow.calls == [20, 20]
    with pytest.raises(ValueError):
        n.retry_delay_s(0, lambda k: 0)


# --- resend rate limit ----------------------------------------------------------------------------


def test_three_resends_an_hour() -> None:
    history = [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)]
    assert n.resend_decision(history[:2], T0 + timedelta(minutes=30), POLICY).allowed
    denied = n.resend_decision(history, T0 + timedelta(minutes=30), POLICY)
    assert not denied.allowed and denied.retry_at == T0 + HOUR
    assert n.resend_decision(history, T0 + HOUR, POLICY).allowed


def test_resend_limit_is_per_site_policy() -> None:
    strict = SitePolicy(resend_limit=1, resend_window_s=600)
    assert not n.resend_decision([T0], T0 + timedelta(minutes=5), strict).allowed
    assert n.resend_decision([T0], T0 + timedelta(minutes=10), strict).allowed
    assert n.resend_decision([], T0, strict).allowed


# --- the SMS: one part, the site's signature, no link ------------------------------------------

SIGNED = SitePolicy(sms_signature="滨江快递柜", sms_signature_en="Riverside Lockers")
# The longest names a site is likely to give: the SMS must still be one part, code whole.
LONG = n.NoticeContext(
    cabinet="滨江花园小区北门东侧12号楼一单元大堂智能快递柜",
    address="滨江路1号",
    tracking_no="JD0123456789012345",
    deadline=DEADLINE,
    link=LINK,
    compartment="A107",
    code="40718253",
    fee_minor=1500,
)
LONG_EN = n.NoticeContext(
    cabinet="Riverside Gardens North Gate East Side Building 12 Unit 1 Lobby Lockers",
    address="1 Riverside Road",
    tracking_no="JD0123456789012345",
    deadline=DEADLINE,
    link=LINK,
    compartment="A107",
    code="40718253",
    fee_minor=1500,
)
SMS_CASES = [(kind, language, ctx) for kind, language in ALL for ctx in ("short", "long")]


@pytest.mark.parametrize(("kind", "language", "size"), SMS_CASES)
def test_every_sms_is_one_part_signed_without_a_link(
    kind: NoticeKind, language: Language, size: str
) -> None:
    context = CONTEXT if size == "short" else (LONG if language is Language.ZH_CN else LONG_EN)
    text = n.render_sms(kind, language, context, SIGNED)
    used, part = n.sms_units(text)
    if language is Language.ZH_CN:
        assert text.startswith("【滨江快递柜】") and part == n.UCS2_PART
        assert used <= 70, (len(text), text)
    else:
        assert text.startswith("[Riverside Lockers] ")
        assert n.is_gsm7(text) and part == n.GSM7_PART, text  # not UCS-2: 160 a part
        assert used <= 160, (used, text)
    assert n.sms_parts(text) == 1
    # No link anywhere in a text: not the page, not a bare domain.
    assert "http" not in text and LINK not in text and "lockers.example" not in text
    assert "{" not in text and "}" not in text
    # What the person needs, whole: the code where the kind has one, the deadline, the cabinet
    # (or the start of it), and the door where the kind names one.
    fields = n.template_fields(kind, language, Channel.SMS)
    if "code" in fields:
        assert context.code in text
    if kind is not NoticeKind.WITHDRAWN:
        assert DEADLINE_TEXT[language] in text
    assert context.cabinet[:6] in text
    if "compartment" in fields:
        assert f"{context.compartment}" in text
    # Written in the language asked for: Chinese texts are Chinese, English ones have none.
    has_han = any("\u4e00" <= c <= "\u9fff" for c in text)
    assert has_han is (language is Language.ZH_CN)


@pytest.mark.parametrize(("kind", "language"), ALL)
def test_the_wechat_message_has_the_fields_and_the_link_the_sms_leaves_out(
    kind: NoticeKind, language: Language
) -> None:
    notice = n.compose(
        kind=kind, phone=PHONE, language=language, context=CONTEXT, policy=SIGNED, key="k"
    )
    assert notice.text_for(Channel.SMS) == notice.text
    wechat = notice.text_for(Channel.WECHAT)
    assert CONTEXT.cabinet in wechat and CONTEXT.address in wechat
    if "code" in n.template_fields(kind, language, Channel.SMS):
        assert CONTEXT.code in wechat and CONTEXT.code in notice.text
    scrubbed = notice.scrubbed()
    if notice.code:
        assert notice.code not in scrubbed.text and notice.code not in scrubbed.wechat_text


def test_a_long_cabinet_name_is_cut_with_an_ellipsis_and_the_code_stays_whole() -> None:
    text = n.render_sms(NoticeKind.DEPOSITED, Language.ZH_CN, LONG, SIGNED)
    assert "…" in text and "40718253" in text and "A107" in text
    assert len(text) <= 70


def test_the_recipient_language_follows_the_site_but_a_foreign_mobile_reads_english() -> None:
    zh, en = SitePolicy(language=Language.ZH_CN), SitePolicy(language=Language.EN)
    assert n.recipient_language("+8613812345678", zh) is Language.ZH_CN
    assert n.recipient_language("+85291234567", zh) is Language.ZH_CN
    assert n.recipient_language("+447911123456", zh) is Language.EN
    assert n.recipient_language("+8613812345678", en) is Language.EN


def test_sms_signatures_are_checked() -> None:
    from cloud.core.errors import PolicyError

    with pytest.raises(PolicyError, match="brackets"):
        SitePolicy(sms_signature="【快递柜】")
    with pytest.raises(PolicyError, match="sms_signature"):
        SitePolicy(sms_signature="柜")
    with pytest.raises(PolicyError, match="sms_signature_en"):
        SitePolicy(sms_signature_en="滨江")


def test_gsm7_counts_extension_characters_twice() -> None:
    assert n.sms_units("a€") == (3, 160)
    assert n.sms_units("取件") == (2, 70)
    assert n.sms_parts("x" * 161) == 2
