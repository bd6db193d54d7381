"""Pickup codes, the QR payload the cabinet's scanner accepts, and one-time SMS codes.

Randomness comes in as `randbelow(n) -> int in [0, n)`: adapters bind it to `secrets.randbelow`,
tests to a scripted fake. The clear code lives only as long as it takes to write the notice: what
is stored and sent to the cabinet is `code_hash` (protocol.hashing, keyed by the cabinet's own
`code_key`). Because the hash is keyed per cabinet, "unique among the cabinet's live parcels" is
checked on hashes alone, without ever keeping a clear code.

QR payload, shared with the cabinet core: `LKR1:<cab>:<code>` — a fixed tag and version (`LKR1`,
so the scanner can ignore any other QR it is shown), the cabinet id (so a QR for another cabinet
is refused before a code is even tried and never counts towards the keypad lockout) and the
digits of the pickup code. The cabinet validates it exactly like a typed code.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from cloud.core.errors import CodeSpaceExhausted, QrPayloadError
from cloud.core.policies import MAX_CODE_LENGTH, MIN_CODE_LENGTH
from protocol.hashing import code_hash
from protocol.topics import CABINET_ID_PATTERN

RandBelow = Callable[[int], int]

# Live codes may fill at most this share of the code space: beyond it a guess at the keypad
# finds some parcel too often (and collisions make issuing slow). 6 digits allow 1,000 live
# parcels per cabinet, 8 digits 100,000: a real cabinet never gets near either.
MAX_LIVE_SHARE = 1 / 1000
# With the share above, one retry in a thousand collides; 50 in a row means the random source is
# broken, not that we were unlucky.
MAX_ATTEMPTS = 50

QR_TAG = "LKR1"
_QR = re.compile(
    rf"{QR_TAG}:(?P<cab>{CABINET_ID_PATTERN}):(?P<code>[0-9]{{{MIN_CODE_LENGTH},{MAX_CODE_LENGTH}}})"
)


class IssuedCode(NamedTuple):
    """A fresh pickup code: `code` for the notice only, `code_hash` for storage and `codes.put`."""

    code: str
    code_hash: str

    def __repr__(self) -> str:
        # A code must never reach a log line, not even through a debug print of this tuple.
        return f"IssuedCode(code='{'*' * len(self.code)}', code_hash={self.code_hash!r})"


def issue_code(
    *, length: int, live_hashes: Collection[str], randbelow: RandBelow, code_key: bytes
) -> IssuedCode:
    """Draw a `length`-digit code whose hash is not among `live_hashes` (the cabinet's live codes).

    Raise CodeSpaceExhausted when the live codes fill too much of the space, or when no free code
    turns up in MAX_ATTEMPTS draws.
    """
    if not MIN_CODE_LENGTH <= length <= MAX_CODE_LENGTH:
        raise ValueError(f"code length must be {MIN_CODE_LENGTH}–{MAX_CODE_LENGTH}, not {length}")
    space = 10**length
    if len(live_hashes) >= space * MAX_LIVE_SHARE:
        raise CodeSpaceExhausted(
            f"{len(live_hashes)} live codes already fill the {length}-digit space as far as is "
            f"safe ({int(space * MAX_LIVE_SHARE)}): use longer codes for this site"
        )
    for _ in range(MAX_ATTEMPTS):
        code = _digits(randbelow, length)
        hashed = code_hash(code_key, code)
        if hashed not in live_hashes:
            return IssuedCode(code, hashed)
    raise CodeSpaceExhausted(
        f"no free {length}-digit code in {MAX_ATTEMPTS} draws: the random source repeats itself"
    )


def _digits(randbelow: RandBelow, length: int) -> str:
    # One draw over the whole space keeps every code equally likely, leading zeros included.
    value = randbelow(10**length)
    if not (isinstance(value, int) and 0 <= value < 10**length):
        raise ValueError(f"randbelow({10**length}) returned {value!r}, out of range")
    return str(value).zfill(length)


def qr_payload(cab: str, code: str) -> str:
    """Return the text of the QR the cabinet's scanner accepts: `LKR1:<cab>:<code>`."""
    text = f"{QR_TAG}:{cab}:{code}"
    if not _QR.fullmatch(text):
        raise QrPayloadError("cabinet id or code is malformed; cannot build a pickup QR")
    return text


def parse_qr_payload(text: str) -> tuple[str, str]:
    """Return `(cab, code)` from a scanned QR text, or raise QrPayloadError (code not shown)."""
    match = _QR.fullmatch(text.strip())
    if not match:
        # The scanned text may hold a real code: never echo it into the error.
        raise QrPayloadError(f"not a pickup QR (expected {QR_TAG}:<cabinet>:<digits>)")
    return match["cab"], match["code"]


def pickup_link(
    base_url: str,
    cab: str,
    code: str,
    *,
    compartment: str | None = None,
    deadline: datetime | None = None,
) -> str:
    """Return the notice's link to the pickup page, with the code in the URL fragment.

    A fragment never leaves the browser, so no web server, proxy or access log sees the code;
    the page hands it to the QR renderer in a request body. The cloud keeps no clear code to
    build the page from, so the door and the deadline ride in the fragment too
    (`;door=A07;by=<unix seconds>`): the page shows them without asking a server that would
    then answer "which door does this code open" to anyone guessing codes.
    """
    fragment = qr_payload(cab, code)
    if compartment:
        fragment += f";door={compartment}"
    if deadline is not None:
        fragment += f";by={int(deadline.timestamp())}"
    return f"{base_url.rstrip('/')}/pickup/{cab}#{fragment}"


# --- one-time codes for scan-to-open (phone + SMS code) -------------------------------------------

OTP_LENGTH = 6
OTP_TTL_S = 5 * 60
OTP_MAX_ATTEMPTS = 5


class OtpCheck(StrEnum):
    """The outcome of checking a one-time code."""

    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"  # it already opened a session: one time means one time
    LOCKED = "locked"  # too many wrong tries: ask for a new code


@dataclass(frozen=True)
class OneTimeCode:
    """A stored one-time code: its keyed hash, its deadline and the tries it has left."""

    phone: str = field(repr=False)
    code_hash: str = field(repr=False)
    expires_at: datetime
    attempts_left: int = OTP_MAX_ATTEMPTS
    used: bool = False


def issue_one_time_code(
    *, phone: str, randbelow: RandBelow, key: bytes, now: datetime, ttl_s: int = OTP_TTL_S
) -> tuple[str, OneTimeCode]:
    """Return a 6-digit code to text to `phone` and the record to store (which holds no code)."""
    code = _digits(randbelow, OTP_LENGTH)
    record = OneTimeCode(
        phone=phone,
        code_hash=code_hash(key, f"{phone}:{code}"),
        expires_at=_aware(now) + timedelta(seconds=ttl_s),
    )
    return code, record


def check_one_time_code(
    record: OneTimeCode, entered: str, *, key: bytes, now: datetime
) -> tuple[OtpCheck, OneTimeCode]:
    """Check `entered` against `record`; return the outcome and the record to store back."""
    if record.used:
        return OtpCheck.USED, record
    if _aware(now) >= record.expires_at:
        return OtpCheck.EXPIRED, record
    if record.attempts_left <= 0:
        return OtpCheck.LOCKED, record
    expected = code_hash(key, f"{record.phone}:{entered.strip()}")
    if hmac.compare_digest(expected, record.code_hash):
        return OtpCheck.OK, replace(record, used=True)
    left = record.attempts_left - 1
    return (OtpCheck.WRONG if left else OtpCheck.LOCKED), replace(record, attempts_left=left)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now
