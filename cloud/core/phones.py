"""Phone numbers: parse to E.164, and mask for every log line and page (`+86 138****1234`).

`mask_phone` is the one masking function of the cloud: the dashboard, the pickup page, log lines
and notice log forms all go through it, so a number is shown the same way everywhere and never
in full.
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "CN"


def normalize_phone(text: str, default_region: str = DEFAULT_REGION) -> str:
    """Return `text` as an E.164 number (`+8613812341234`), or raise ValueError saying why."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as err:
        raise ValueError(f"not a phone number: {err}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str:
    """Mask a phone for display: country code, first digits, `****`, last four digits.

    `+8613812341234` → `+86 138****1234`. At least four digits, and at least a third of the
    national number, are always hidden; anything that does not parse shows no digit at all.
    """
    if not phone:
        return "****"
    try:
        number = phonenumbers.parse(phone, None if phone.startswith("+") else DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return "****"
    national = phonenumbers.national_significant_number(number)
    hidden = max(4, -(-len(national) // 3))
    if len(national) <= hidden:
        return f"+{number.country_code} ****"
    tail = min(4, len(national) - hidden)
    head = min(3, len(national) - hidden - tail)
    hidden = len(national) - head - tail
    return f"+{number.country_code} {national[:head]}{'*' * hidden}{national[-tail:]}"
