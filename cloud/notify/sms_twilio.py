"""SMS through the `twilio` library, at a configurable API base URL, and its status callbacks.

Redirecting the library: `twilio.rest.Client` builds every Messages URL from its Api domain's
`base_url` (`client.api.base_url`, "https://api.twilio.com"; `Domain.absolute_url` joins it to
"/2010-04-01/Accounts/{sid}/Messages.json" at each request). Setting that one attribute moves the
whole Api domain to another host while the library still does everything else itself: auth,
form encoding, error parsing into `TwilioRestException`. Region/edge settings cannot do it (they
only rewrite `*.twilio.com` host names), and a custom `http_client` that rewrites URLs would
re-implement the library's transport; we pass our own `TwilioHttpClient` only to set a timeout.

Twilio has no idempotency key for creating a message, so a send whose answer was lost cannot be
asked about: the dispatcher treats it as "maybe sent". The StatusCallback URL carries the
attempt's `ref`, so Twilio's own callback can later settle such a row (`record_status_callback`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from urllib.parse import parse_qs, quote, urlsplit

import requests
from sqlmodel import Session
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from cloud.core.phones import mask_phone
from cloud.db.models import NoticeOutbox
from cloud.notify.errors import (
    AmbiguousSendError,
    PermanentSendError,
    RetryableSendError,
    SignatureError,
)
from cloud.notify.ports import OutgoingMessage, SendReceipt
from cloud.services import deliveries
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0

# Twilio answers these when a retry may work: overloaded, rate limited, or its own fault.
_RETRYABLE_HTTP = frozenset({429, 500, 502, 503, 504})

# Message statuses in the order Twilio moves through them; a late callback never moves one back.
_STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}


class TwilioSms:
    """Send SMS through Twilio's Messages API with the `twilio` library."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_: str,
        base_url: str = "https://api.twilio.com",
        status_callback_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.from_ = from_
        self.status_callback_url = status_callback_url
        self.client = Client(
            account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout_s)
        )
        self.client.api.base_url = base_url.rstrip("/")  # see the module docstring

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> TwilioSms:
        """Build the sender the settings describe; callbacks go to the API's Twilio route."""
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_=settings.twilio_from,
            base_url=settings.twilio_base_url,
            status_callback_url=f"{settings.base_url.rstrip('/')}/api/v1/callbacks/twilio/status",
        )

    def send(self, message: OutgoingMessage) -> SendReceipt:
        """Create the message; raise a `SendError` subclass saying whether a retry may work."""
        callback = None
        if self.status_callback_url:
            callback = f"{self.status_callback_url}?ref={quote(message.ref, safe='')}"
        try:
            created = self.client.messages.create(
                to=message.to, from_=self.from_, body=message.text, status_callback=callback
            )
        except TwilioRestException as err:
            # Twilio's messages quote the number: mask it before it reaches a log or a row.
            text = (err.msg or "").replace(message.to, mask_phone(message.to))
            if err.status in _RETRYABLE_HTTP:
                raise RetryableSendError(
                    f"Twilio HTTP {err.status}: {text}", code=err.code
                ) from None
            raise PermanentSendError(f"Twilio HTTP {err.status}: {text}", code=err.code) from None
        except requests.ConnectTimeout as err:
            raise RetryableSendError(f"Twilio unreachable: {type(err).__name__}") from None
        except requests.ConnectionError as err:
            if _never_connected(err):
                raise RetryableSendError("Twilio unreachable: connection refused") from None
            raise AmbiguousSendError(f"Twilio connection lost: {type(err).__name__}") from None
        except requests.RequestException as err:
            # A read timeout or a broken answer: the message may have been created.
            raise AmbiguousSendError(f"Twilio did not answer: {type(err).__name__}") from None
        if not created.sid:
            raise AmbiguousSendError("Twilio answered without a message SID")
        return SendReceipt(provider_id=created.sid, status=created.status or "queued")


def _never_connected(err: requests.ConnectionError) -> bool:
    reason = err.args[0] if err.args else None
    return isinstance(getattr(reason, "reason", None), NewConnectionError)


def record_status_callback(
    *,
    session: Session,
    auth_token: str,
    url: str,
    form: dict[str, str],
    signature: str | None,
    now: datetime,
) -> NoticeOutbox | None:
    """Record a Twilio status callback on its notice row; return the row, None if it has none.

    `url` is the full URL Twilio requested and `form` its POST fields. Raise SignatureError,
    changing nothing, unless `X-Twilio-Signature` verifies. A callback for a row the dispatcher
    left "maybe sent" (it crashed before recording the SID) settles it as sent: the callback's
    `ref` names the attempt.
    """
    if not auth_token:
        # An empty key verifies what anybody signs with it: refuse rather than check.
        raise SignatureError("no Twilio auth token is set: a callback cannot be verified")
    if not signature or not RequestValidator(auth_token).validate(url, form, signature):
        raise SignatureError("X-Twilio-Signature does not verify")
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        raise ValueError("a status callback needs MessageSid and MessageStatus")
    ref = parse_qs(urlsplit(url).query).get("ref", [""])[-1]
    return deliveries.record_delivery(
        session=session,
        provider_id=sid,
        status=status,
        error_code=form.get("ErrorCode"),
        attempt_ref=ref,
        channel="sms",
        provider="Twilio",
        status_rank=_STATUS_RANK,
        now=now,
    )
