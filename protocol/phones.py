"""How a phone number is shown on every screen, page and log line, cabinet and cloud alike.

One rule for both sides, so a courier's kiosk and a manager's page show a recipient the same way
(`+86 138****1234`) and never in full.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata

DEFAULT_REGION = "CN"

# A stored number is E.164 (`cloud.core.phones.normalize_phone`): `+`, then digits only.
_E164 = re.compile(r"\+[1-9][0-9]{2,19}")  # a country code never starts with 0
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumbers' bounds on a national number's length


def mask_phone(phone: str | None) -> str:
    """Mask a phone for display: country code, first digits, `****`, last four digits.

    `+8613812341234` → `+86 138****1234`. At least four digits, and at least a third of the
    national number, are always hidden; anything that does not parse shows no digit at all.
    """
    if not phone:
        return "****"
    split = _split_e164(phone)
    if split is None:
        return _mask_parsed(phone)
    return _mask(*split)


def _split_e164(phone: str) -> tuple[int, str] | None:
    """An E.164 string's country code and national number, as `phonenumbers.parse` reads them,
    by slicing the string (a parse cost 15 µs, a list page masks 50 numbers). None when the
    slice might differ from the parse: not `+digits`, no known country code, a length out of
    bounds, all zeros, or a national number that starts like the country's national prefix
    (the parse may strip that); the caller then parses."""
    if not _E164.fullmatch(phone):
        return None
    for size in (1, 2, 3):  # country codes are prefix-free: the first known prefix is the one
        country_code = int(phone[1 : 1 + size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            national = phone[1 + size :]
            break
    else:
        return None
    if not _MIN_NSN <= len(national) <= _MAX_NSN or not national.strip("0"):
        return None
    prefix = _national_prefix(country_code)
    if prefix is None or prefix.match(national):
        return None
    return country_code, national


_PREFIXES: dict[int, re.Pattern[str] | None] = {}
_NO_PREFIX = re.compile(r"(?!)")  # matches nothing: the country has no national prefix


def _national_prefix(country_code: int) -> re.Pattern[str] | None:
    """The pattern of what a parse may strip from the front of a national number (None: no
    metadata for the country code, so only a parse can tell)."""
    if country_code not in _PREFIXES:
        region = phonenumbers.region_code_for_country_code(country_code)
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
        if metadata is None:
            _PREFIXES[country_code] = None
        else:
            pattern = metadata.national_prefix_for_parsing or metadata.national_prefix
            _PREFIXES[country_code] = re.compile(pattern) if pattern else _NO_PREFIX
    return _PREFIXES[country_code]


def _mask_parsed(phone: str) -> str:
    """The mask of a number in any format `phonenumbers` reads (the general, slower path)."""
    try:
        number = phonenumbers.parse(phone, None if phone.startswith("+") else DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return "****"
    return _mask(number.country_code, phonenumbers.national_significant_number(number))


def _mask(country_code: int, national: str) -> str:
    hidden = max(4, -(-len(national) // 3))
    if len(national) <= hidden:
        return f"+{country_code} ****"
    tail = min(4, len(national) - hidden)
    head = min(3, len(national) - hidden - tail)
    hidden = len(national) - head - tail
    return f"+{country_code} {national[:head]}{'*' * hidden}{national[-tail:]}"
