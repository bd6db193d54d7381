"""The phone mask's fast path for stored E.164 numbers masks exactly as a full parse does."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from protocol.phones import _mask_parsed, mask_phone


def _example_numbers() -> list[str]:
    """Every region's and non-geographic code's example numbers of every type, as stored."""
    numbers = []
    types = [
        getattr(phonenumbers.PhoneNumberType, name)
        for name in dir(phonenumbers.PhoneNumberType)
        if name.isupper()
    ]
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(
                    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                )
    for code in phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS:
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            numbers.append(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return numbers


def test_every_countrys_stored_numbers_mask_as_a_parse_does() -> None:
    numbers = _example_numbers()
    assert len(numbers) > 1000
    for number in numbers:
        assert mask_phone(number) == _mask_parsed(number), number


def test_random_digit_strings_mask_as_a_parse_does() -> None:
    # Not only valid numbers: whatever `+digits` a row holds, and the prefixes a parse strips
    # (a national 0, China's carrier codes 11x/12x/179), short and long ones, leading zeros.
    draw = random.Random(17)
    numbers = [
        f"+86{draw.choice('1234567890')}{draw.randrange(10**9, 10**10)}" for _ in range(2000)
    ]
    for _ in range(4000):
        digits = "".join(draw.choice("0123456789") for _ in range(draw.randint(1, 21)))
        numbers.append("+" + digits)
    numbers += ["+8600000000000", "+390612345678", "+44020 7946 0000", "+1", "+", "+0861381234"]
    for number in numbers:
        assert mask_phone(number) == _mask_parsed(number), number


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("+8613812341234", "+86 138****1234"),
        ("13812341234", "+86 138****1234"),  # a national number, read as China's
        ("+86 138 1234 1234", "+86 138****1234"),  # with spaces: parsed
        ("+12025550143", "+1 20****0143"),
        ("+390612345678", "+39 06****5678"),  # Italy's leading zero kept
        ("not a phone", "****"),
        ("", "****"),
        (None, "****"),
    ],
)
def test_masks_as_before(stored: str | None, shown: str) -> None:
    assert mask_phone(stored) == shown
