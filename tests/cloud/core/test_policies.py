"""Site policy defaults and validation; phone parsing and masking."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from cloud.core.errors import PolicyError
from cloud.core.phones import mask_phone, normalize_phone
from cloud.core.policies import Language, SitePolicy


def test_defaults_are_the_designs() -> None:
    policy = SitePolicy()
    assert policy.pickup_window_s == 72 * 3600
    assert policy.reminder_before_s == 24 * 3600
    assert policy.code_length == 8
    assert (policy.quiet_start, policy.quiet_end) == (time(22), time(8))
    assert policy.timezone == "Asia/Shanghai" and policy.language is Language.ZH_CN
    assert policy.overdue_fee_per_day_minor == 0
    assert (policy.resend_limit, policy.resend_window_s) == (3, 3600)


def test_language_may_be_given_as_text() -> None:
    assert SitePolicy(language="en").language is Language.EN  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pickup_window_s": 60}, "pickup_window_s"),
        ({"pickup_window_s": 31 * 86400}, "pickup_window_s"),
        ({"pickup_window_s": True}, "pickup_window_s"),
        ({"pickup_window_s": 3600.5}, "pickup_window_s"),
        ({"reminder_before_s": 72 * 3600}, "reminder_before_s"),
        ({"code_length": 5}, "code_length"),
        ({"code_length": 11}, "code_length"),
        ({"quiet_start": None}, "quiet_start"),
        ({"quiet_end": time(22)}, "quiet_end"),
        ({"quiet_start": time(22, tzinfo=UTC)}, "quiet_start"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"language": "fr"}, "language"),
        ({"overdue_fee_per_day_minor": -1}, "overdue_fee_per_day_minor"),
        ({"overdue_fee_cap_minor": -5}, "overdue_fee_cap_minor"),
        ({"currency": "yuan"}, "currency"),
        ({"resend_limit": 0}, "resend_limit"),
        ({"resend_window_s": 1}, "resend_window_s"),
    ],
)
def test_bad_values_are_refused_with_the_field_named(changes: dict, field: str) -> None:
    with pytest.raises(PolicyError) as raised:
        SitePolicy(**changes)
    assert raised.value.field == field
    assert field in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_no_quiet_hours() -> None:
    policy = SitePolicy(quiet_start=None, quiet_end=None)
    night = datetime(2024, 5, 1, 18, 0, tzinfo=UTC)  # 02:00 in Shanghai
    assert not policy.has_quiet_hours
    assert not policy.is_quiet(night)
    assert policy.outside_quiet_hours(night) == night


def test_quiet_hours_follow_daylight_saving() -> None:
    policy = SitePolicy(timezone="Europe/Berlin")
    # 2024-03-31: clocks jump from 02:00 to 03:00. 08:00 local is 06:00 UTC that morning.
    night = datetime(2024, 3, 30, 23, 0, tzinfo=UTC)  # 00:00 CET
    assert policy.is_quiet(night)
    assert policy.outside_quiet_hours(night) == datetime(2024, 3, 31, 6, 0, tzinfo=UTC)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SitePolicy().is_quiet(datetime(2024, 5, 1, 23, 0))


# --- phones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613812341234", "+86 138****1234"),
        ("13812341234", "+86 138****1234"),
        ("+12025550123", "+1 20****0123"),
        ("+85251234567", "+852 ****4567"),
        ("+86123", "+86 ****"),
        ("not a phone", "****"),
        ("", "****"),
        (None, "****"),
    ],
)
def test_mask_phone(phone: str | None, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_mask_phone_always_hides_at_least_four_digits() -> None:
    for phone in ("+8613812341234", "+12025550123", "+447911123456", "+4930123456"):
        shown = sum(ch.isdigit() for ch in mask_phone(phone).split(" ", 1)[1])
        national = len(phone) - 1 - len(mask_phone(phone).split(" ")[0][1:])
        assert national - shown >= 4


def test_normalize_phone() -> None:
    assert normalize_phone("138 1234 1234") == "+8613812341234"
    assert normalize_phone("+1 (202) 555-0123") == "+12025550123"
    with pytest.raises(ValueError):
        normalize_phone("12345")
    with pytest.raises(ValueError):
        normalize_phone("call me")
