"""How a phone number is shown on every screen, page and log line, cabinet and cloud alike.

One rule for both sides, so a courier's kiosk and a manager's page show a recipient the same way
(`+86 138****1234`) and never in full.
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "CN"


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
