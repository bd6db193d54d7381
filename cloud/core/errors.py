"""Errors the cloud's pure core raises when asked to do something its rules forbid.

CoreError
├── IllegalTransition    an event is not allowed in the parcel's current status (nothing changed)
├── PolicyError          a site policy value is out of range; also a ValueError; carries .field
├── CodeSpaceExhausted   no free pickup code left (the cabinet's live parcels fill too much of the
│                        code space, or the random source keeps repeating itself)
└── QrPayloadError       a scanned QR text is not `LKR1:<cab>:<code>`; also a ValueError

Every core function leaves its inputs untouched when it raises, so an adapter can catch `CoreError`
at its seam, turn it into a 409 / 422 or a logged anomaly, and carry on.
"""

from __future__ import annotations


class CoreError(Exception):
    """A rule of the cloud's domain core was broken."""


class IllegalTransition(CoreError):
    """`event` is not allowed for a parcel in `status` (None: the parcel does not exist yet)."""

    def __init__(self, status: str | None, event: str, reason: str | None = None) -> None:
        self.status = status
        self.event = event
        self.reason = reason
        where = f"a parcel in status {status!r}" if status else "a parcel that does not exist yet"
        super().__init__(f"{event} is not allowed for {where}" + (f": {reason}" if reason else ""))


class PolicyError(CoreError, ValueError):
    """A site policy value is out of range; `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CodeSpaceExhausted(CoreError):
    """No pickup code can be issued without making codes too easy to guess or to collide."""


class QrPayloadError(CoreError, ValueError):
    """A scanned text is not a pickup QR payload."""
