"""What a provider send can fail with, sorted by what the dispatcher may do next.

    SendError                    any failed send; `code` is the provider's error code, if any
     ├── RetryableSendError      certainly not sent, may work later (5xx, 429, refused connection)
     ├── PermanentSendError      certainly not sent, never will on this channel (bad number, …)
     └── AmbiguousSendError      may have been sent (timeout after the request left): never retry

The adapters translate library and HTTP errors into these at the seam, so the dispatcher never
sees a `TwilioRestException` or an `httpx` error.
"""

from __future__ import annotations


class SendError(Exception):
    """A provider did not confirm a send."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code

    def __str__(self) -> str:
        text = super().__str__()
        return f"{self.code}: {text}" if self.code is not None else text


class RetryableSendError(SendError):
    """Not sent; the same request may succeed later."""


class PermanentSendError(SendError):
    """Not sent; this channel will never take it (fall back or give up)."""


class AmbiguousSendError(SendError):
    """The request may have reached the provider: sending again could send twice."""


class SignatureError(ValueError):
    """A provider callback's signature does not verify: refused, nothing changed."""
