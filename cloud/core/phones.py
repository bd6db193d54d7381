"""Phone numbers: parse to E.164; masked for every log line and page by `protocol.phones`.

`mask_phone` (re-exported here) is the one masking function of cabinet and cloud alike: the
dashboard, the pickup page, log lines and notice log forms all go through it, so a number is
shown the same way everywhere and never in full.
"""

from __future__ import annotations

import phonenumbers

from protocol.phones import DEFAULT_REGION, mask_phone

__all__ = ["DEFAULT_REGION", "mask_phone", "normalize_phone"]


def normalize_phone(text: str, default_region: str = DEFAULT_REGION) -> str:
    """Return `text` as an E.164 number (`+8613812341234`), or raise ValueError saying why."""
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as err:
        raise ValueError(f"not a phone number: {err}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
