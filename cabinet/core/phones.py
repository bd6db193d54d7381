"""Recipients' mobile numbers: parse what was typed into E.164 (CN by default), and mask it."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from cabinet.core.screens import PhoneProblem
from protocol.phones import mask_phone

__all__ = ["mask_phone", "parse_phone"]

MAX_TYPED_CHARS = 32  # longer than any number with spaces; phonenumbers needs no more
_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def parse_phone(typed: str, region: str = "CN") -> str | PhoneProblem:
    """Return the mobile number as E.164, or why it is refused."""
    text = typed.strip()
    if not text:
        return PhoneProblem.EMPTY
    if len(text) > MAX_TYPED_CHARS:
        return PhoneProblem.INVALID
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return PhoneProblem.INVALID
    if not phonenumbers.is_valid_number(number):
        return PhoneProblem.INVALID
    # An SMS cannot reach a landline; where the plan cannot tell (US), let it through.
    if phonenumbers.number_type(number) not in _MOBILE:
        return PhoneProblem.NOT_MOBILE
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
