"""Enrolment codes: their form, their hash, and the limits that make guessing one hopeless.

An enrolment code stands in for a cabinet's credentials until the cabinet trades it for them
(`POST /api/v1/enrol`), once. It is 160 random bits written as 32 base32 letters in groups of
four (`K7QF-...`), so an installer can read it off a screen or type it; its QR carries the same
text. The cloud keeps only its SHA-256: with 160 bits of entropy no salt or slow hash is needed
(nobody can try 2^160 preimages), and a lookup by hash stays one index probe.

Guessing: a client address gets `TRIES_PER_CLIENT_HOUR` wrong codes an hour, then 429. Even an
attacker with a million addresses (2^20) guessing around the clock for a year makes about
2^20 x 10 x 8766 < 2^37 guesses; with 10,000 live codes (< 2^14) the chance that any guess hits
is below 2^37 x 2^14 / 2^160 = 2^-109 (tests/cloud/api/test_enrol.py).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import timedelta

CODE_BYTES = 20  # 160 bits: 32 base32 letters
CODE_GROUP = 4
DEFAULT_LIFETIME = timedelta(days=7)  # an installer's visit may be days after the order
MAX_LIFETIME = timedelta(days=90)
TRIES_PER_CLIENT_HOUR = 10  # wrong codes from one address before it waits
TRIES_WINDOW = timedelta(hours=1)
CODE_HASH_LENGTH = 64  # hex SHA-256

_BASE32 = re.compile(r"^[A-Z2-7]+$")


class EnrolmentCodeError(ValueError):
    """Text that cannot be an enrolment code (wrong letters or length)."""


def format_code(random_bytes: bytes) -> str:
    """Write `random_bytes` (CODE_BYTES of them) as the code an installer reads: ABCD-EFGH-..."""
    if len(random_bytes) != CODE_BYTES:
        raise ValueError(f"an enrolment code is made of {CODE_BYTES} random bytes")
    text = base64.b32encode(random_bytes).decode().rstrip("=")
    return "-".join(text[i : i + CODE_GROUP] for i in range(0, len(text), CODE_GROUP))


def normalize_code(text: str) -> str:
    """The code as hashed: letters only, upper case (dashes and spaces as typed are dropped)."""
    letters = re.sub(r"[\s-]", "", text).upper()
    if len(letters) != 32 or not _BASE32.match(letters):
        raise EnrolmentCodeError(
            "an enrolment code is 32 letters A-Z and digits 2-7, in groups of four"
        )
    return letters


def code_hash(text: str) -> str:
    """The hash the cloud keeps (SHA-256 hex of the normalized code); EnrolmentCodeError if the
    text cannot be a code."""
    return hashlib.sha256(normalize_code(text).encode()).hexdigest()


def guess_success_bound(*, guesses: int, live_codes: int) -> float:
    """The chance that any of `guesses` random guesses hits one of `live_codes` live codes."""
    return guesses * live_codes / 2 ** (8 * CODE_BYTES)
