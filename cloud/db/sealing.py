"""Seal a pickup code for the notice outbox, so the database never holds it in clear.

The code must wait in the outbox until its notice is sent, but the contract forbids keeping it
in clear (docs/mqtt.md#pickup-codes). It is sealed with AES-256-GCM (the `cryptography` library)
under a key derived from the cloud's secret key (settings, never in the database), with the
notice's dedupe key as associated data, so a sealed code cannot be moved to another notice.

A cabinet's pickup-code key (`cabinets.code_key`) is sealed the same way, with the cabinet's id
as associated data: with the key and a stored code hash, a leaked database would give every live
code in minutes (10**8 HMACs), so the database alone must not hold it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "s2"
NONCE_BYTES = 12  # GCM's standard nonce; random per seal, never reused under one key in practice
TAG_BYTES = 16  # GCM's authentication tag


class SealError(ValueError):
    """A sealed value is malformed, was made under another key, or was tampered with."""


def seal(secret_key: bytes, plaintext: str, *, context: str) -> str:
    """Seal `plaintext` for `context` (the notice's dedupe key)."""
    return seal_bytes(secret_key, plaintext.encode(), context=context)


def unseal(secret_key: bytes, sealed: str, *, context: str) -> str:
    """Return what `seal` sealed for `context`, or raise SealError."""
    return unseal_bytes(secret_key, sealed, context=context).decode()


def seal_bytes(secret_key: bytes, plaintext: bytes, *, context: str) -> str:
    """Seal raw bytes (a key) for `context`: `seal`'s format, `sealed_length(len)` characters."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    body = _cipher(secret_key).encrypt(nonce, plaintext, context.encode())
    return f"{VERSION}:{base64.urlsafe_b64encode(nonce + body).decode()}"


def sealed_length(plaintext_bytes: int) -> int:
    """The length of a sealed text of `plaintext_bytes` bytes (to size the column holding it)."""
    raw = NONCE_BYTES + plaintext_bytes + TAG_BYTES
    return len(VERSION) + 1 + 4 * -(-raw // 3)


def is_sealed(text: str) -> bool:
    """Whether `text` has the sealed form (a migration tells sealed rows from clear ones)."""
    return text.startswith(f"{VERSION}:")


def unseal_bytes(secret_key: bytes, sealed: str, *, context: str) -> bytes:
    """Return what `seal_bytes` sealed for `context`, or raise SealError."""
    version, _, text = sealed.partition(":")
    if version != VERSION:
        raise SealError(f"unknown seal version {version!r}")
    try:
        raw = base64.urlsafe_b64decode(text.encode())
    except ValueError:
        raise SealError("sealed value is not base64") from None
    if len(raw) <= NONCE_BYTES + TAG_BYTES:  # nonce + GCM's tag + at least one byte
        raise SealError("sealed value is too short")
    try:
        return _cipher(secret_key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
    except InvalidTag:
        raise SealError("sealed value fails its check: wrong key, context or tampered") from None


def _cipher(secret_key: bytes) -> AESGCM:
    return _cipher_of(bytes(secret_key))  # bytes: a bytearray key cannot be a cache key


@functools.lru_cache(maxsize=16)
def _cipher_of(secret_key: bytes) -> AESGCM:
    # One per key for the process: deriving the subkey and building the cipher for every value
    # sealed or unsealed cost the worker as much as the AES itself. AESGCM holds no state
    # between calls (each takes its own nonce), so threads may share it.
    if len(secret_key) < 16:
        raise ValueError("the sealing key needs at least 16 bytes")
    # A purpose-bound subkey, so the same secret can serve other uses without key reuse.
    return AESGCM(hmac.new(secret_key, b"locker-seal-v2", hashlib.sha256).digest())
