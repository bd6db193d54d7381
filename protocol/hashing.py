"""How secrets travel: the keyed hash of a pickup code and the salted hash of a courier PIN.

Both sides of the contract must compute these the same way: the cloud makes them (`codes.put`,
`couriers.put`), the cabinet checks what is typed against them, offline if need be.

Pickup codes: HMAC-SHA256 under the cabinet's own `code_key` (provisioned with its credentials,
never sent over MQTT). A keyed hash, not a plain one, because an 8-digit code has only 10^8
values: a plain hash read off the broker or a log would be reversed in seconds. One HMAC per
attempt also keeps the check fast (a dict lookup by hash finds every parcel under the code).

Courier PINs: scrypt with a per-courier salt, in one self-describing string, so the cost can be
raised later without breaking old hashes. n=2**14, r=8 is about 16 MiB and tens of milliseconds
on a Raspberry Pi: cheap for a sign-in, costly for a guesser with a stolen journal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

CODE_HASH_PREFIX = "hmac-sha256:"
PIN_HASH_SCHEME = "scrypt"
_PIN_N, _PIN_R, _PIN_P = 2**14, 8, 1


def code_hash(code_key: bytes, code: str) -> str:
    """The keyed hash of a pickup code, as `codes.put` carries it."""
    if not code_key:
        raise ValueError("code_key is empty: every cabinet needs its own secret code key")
    digest = hmac.new(code_key, code.strip().encode(), hashlib.sha256).hexdigest()
    return CODE_HASH_PREFIX + digest


def pin_hash(pin: str, salt: bytes) -> str:
    """Hash a courier PIN as `scrypt$n$r$p$salt$hash` (base64 without padding)."""
    if len(salt) < 16:
        raise ValueError("a PIN salt needs at least 16 random bytes")
    derived = hashlib.scrypt(pin.encode(), salt=salt, n=_PIN_N, r=_PIN_R, p=_PIN_P, dklen=32)
    return "$".join(
        [PIN_HASH_SCHEME, str(_PIN_N), str(_PIN_R), str(_PIN_P), _b64(salt), _b64(derived)]
    )


def verify_pin(pin: str, stored: str) -> bool:
    """Whether `pin` matches a hash made by `pin_hash` (False for any malformed hash)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        if scheme != PIN_HASH_SCHEME:
            return False
        derived = hashlib.scrypt(
            pin.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(derived, _unb64(expected))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
